#!/usr/bin/env bash
# `make demo`: the reference runtime running containers, and what a container is (the tour
# below). `make demo CHAPTER=NN` (tools/demo.sh NN): that chapter's kernel feature, live, from
# chapters/NN_*/demo.txt. Each line is shown as typed, then run; lines starting with # are
# narration. On a terminal the commands are typed out (DEMO_TYPING=0 turns that off).
# Exits 1 when a command failed (tests/test_demos.py runs every chapter's demo).
set -u
export LAB_IMPL=solutions
cd "$(dirname "$0")/.."
export PATH="$(realpath "${VENV:-.venv}")/bin:$PATH"
typing=${DEMO_TYPING:-1}; [ -t 1 ] || typing=0

show() {             # the command, in bold, typed out on a terminal
    printf '\033[1m$ '
    if [ "$typing" = 1 ]; then
        for ((i = 0; i < ${#1}; i++)); do printf '%s' "${1:i:1}"; sleep 0.015; done
    else
        printf '%s' "$1"
    fi
    printf '\033[0m\n'
}

demo() {
    local previous= failed=0 line status
    while IFS= read -r line; do
        case $line in
            "#"*) [ "$previous" = narration ] || echo; echo "${line#\# }"; previous=narration ;;
            "") ;;
            *) show "$line"; bash -c "$line" 2>&1 </dev/null; status=$?; previous=command
               if [ $status -ne 0 ]; then echo "demo: that line failed (exit status $status)"; failed=1; fi ;;
        esac
    done
    return $failed
}

if [ $# -gt 0 ]; then
    found=(chapters/"$1"_*/demo.txt)
    [ -f "${found[0]}" ] || { echo "demo: no chapter $1 with a demo; the chapters: $(ls chapters/*/demo.txt | cut -c 10-11 | tr '\n' ' ')"; exit 2; }
    demo < "${found[0]}"
    exit
fi
demo <<'DEMO'
# A container is a process on the host: lab forks, the child execs the command, lab waits.
lab run --rm busybox echo hello from a container
lab run --rm busybox sleep 2 & until pgrep -x sleep -P $! >/dev/null; do sleep 0.05; done; ps -o pid,ppid,args --forest -p $!,$(pgrep -P $!); wait
# Namespaces change what it sees: it is PID 1, with its own hostname and a network of its own
# (an address on lab's bridge, lab0: chapter 09).
lab run --rm --hostname demo busybox sh -c 'echo "I am PID $$ on $(hostname)"; ps -o pid,comm'
hostname; lab run --rm busybox ip -o -4 addr | cut -d " " -f 2,7
# lab exits the way docker does: the command's status, 128+N when signal N killed it,
# 126 when it cannot be executed, 127 when it does not exist.
lab run --rm busybox sh -c 'exit 3'; echo "exit status $?"
lab run --rm busybox no-such-command; echo "exit status $?"
# Its own files: the image's folder is its / (pivot_root), with a /dev of its own.
lab run --rm busybox ls /
lab run --rm busybox ls /dev
# Limits: a memory hog under -m 32m meets the OOM killer.
lab run --rm -m 32m busybox sh -c 'x=a; while :; do x=$x$x; done'; echo "exit status $?"
# Layers: its / is an overlay, the image's layer under a writable layer of its own; commit
# makes that layer part of a new image.
lab run --name builder busybox sh -c 'echo "made in a container" > /etc/motd; rm /etc/group'
lab commit builder demo:v1 >/dev/null; lab rm builder >/dev/null; lab images
lab run --rm demo:v1 sh -c 'cat /etc/motd; ls /etc'
# Volumes outlive containers: the next one finds what the last one wrote.
lab run --rm -v demo-data:/data busybox sh -c 'echo "kept in a volume" > /data/note'
lab run --rm -v demo-data:/data:ro busybox cat /data/note
# In the background (-d), with logs; exec enters it; stop ends it.
lab run -d --name web busybox sh -c 'trap "echo stopping; exit 0" TERM; echo serving; while :; do sleep 0.1; done' >/dev/null; until lab logs web | grep -q serving; do sleep 0.05; done; lab ps
lab exec web sh -c 'echo "inside: $(hostname), PID 1 is $(cat /proc/1/comm)"'
lab stop web >/dev/null; lab logs web; lab ps -a
lab rm web >/dev/null; lab rmi demo:v1 >/dev/null; lab volume rm demo-data >/dev/null
# And a terminal of its own: lab run -it busybox sh (typed here by tools/transcript.py).
python3 tools/transcript.py --type 'tty; ps' --type 'sleep 100 &' --type 'jobs' --type 'kill %1; wait' --type 'exit' -- lab run -it --rm busybox sh
DEMO
