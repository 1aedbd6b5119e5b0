#!/usr/bin/env bash
# `make demo`: the reference runtime running containers, and what a container is.
set -u
export LAB_IMPL=solutions
export PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"

show() {   # print a command the way a terminal shows it, then run it
    printf '\n\033[1m$ %s\033[0m\n' "$1"
    bash -c "$1"
}

echo "A container is a process on the host: lab forks, the child execs the command, lab waits."
show 'lab run --rm busybox echo hello from a container'
show 'lab run --rm busybox sh -c '"'"'echo "I am PID $$, my parent PID $PPID is: $(tr "\0" " " < /proc/$PPID/cmdline)"'"'"''
echo
echo "lab exits the way docker does: the command's status, or 128+N when signal N killed it."
show 'lab run --rm busybox sh -c "exit 3"; echo "exit status $?"'
show 'lab run --rm busybox sh -c "kill -KILL \$\$"; echo "exit status $?"'
show 'lab run --rm busybox no-such-command; echo "exit status $?"'
echo
echo "Still shared with the host (chapters 01-03 change that): its hostname, its processes, its files."
show 'hostname; lab run --rm busybox hostname'
show 'lab run --rm busybox ls /'
