#!/usr/bin/env bash
# `make demo`: the reference runtime running containers, and what a container is.
# Each line below is shown as typed, then run; lines starting with # are narration.
set -u
export LAB_IMPL=solutions
export PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"

while IFS= read -r line; do
    case $line in
        "#"*) printf '\n%s\n' "${line#\# }" ;;
        *) printf '\033[1m$ %s\033[0m\n' "$line"; bash -c "$line" 2>&1 ;;
    esac
done <<'DEMO'
# A container is a process on the host: lab forks, the child execs the command, lab waits.
lab run --rm busybox echo hello from a container
lab run --rm busybox sh -c 'echo "I am PID $$ and my parent, PID $PPID, is $(cat /proc/$PPID/comm)"'
# lab exits the way docker does: the command's status, or 128+N when signal N killed it.
lab run --rm busybox sh -c 'exit 3'; echo "exit status $?"
lab run --rm busybox sh -c 'kill -KILL $$'; echo "exit status $?"
lab run --rm busybox no-such-command; echo "exit status $?"
# Still shared with the host (chapters 01 to 03 change that): its hostname and its files.
hostname; lab run --rm busybox hostname
lab run --rm busybox head -n 1 /etc/os-release
DEMO
