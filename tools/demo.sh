#!/usr/bin/env bash
# `make demo`: the reference runtime running containers, and what a container is.
# Each line below is shown as typed, then run; lines starting with # are narration.
set -u
export LAB_IMPL=solutions
export PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"

previous=
while IFS= read -r line; do
    case $line in
        "#"*) [ "$previous" = narration ] || echo; echo "${line#\# }"; previous=narration ;;
        *) printf '\033[1m$ %s\033[0m\n' "$line"; bash -c "$line" 2>&1; previous=command ;;
    esac
done <<'DEMO'
# A container is a process on the host: lab forks, the child execs the command, lab waits.
lab run --rm busybox echo hello from a container
lab run --rm busybox sleep 1 & sleep 0.3; ps -o pid,ppid,args --forest -p $!,$(pgrep -P $!); wait
# Namespaces change what it sees: it is PID 1, with its own hostname and a network of its own.
lab run --rm --hostname demo busybox sh -c 'echo "I am PID $$ on $(hostname)"; ps -o pid,comm'
hostname; lab run --rm busybox ip -o link | cut -d " " -f 1-3
# lab exits the way docker does: the command's status, 128+N when signal N killed it,
# 126 when it cannot be executed, 127 when it does not exist.
lab run --rm busybox sh -c 'exit 3'; echo "exit status $?"
lab run --rm busybox no-such-command; echo "exit status $?"
# Its own files: the image's folder is its / (pivot_root), with a /dev of its own.
lab run --rm busybox ls /
lab run --rm busybox ls /dev
# Limits: a memory hog under -m 32m meets the OOM killer.
lab run --rm -m 32m busybox sh -c 'x=a; while :; do x=$x$x; done'; echo "exit status $?"
DEMO
