# The course's package lists, each written once. Sourced (bash) by tools/provision.sh and
# tools/build-box; the Python packages are in pyproject.toml only.

# The Debian/Ubuntu packages the course needs wherever it runs (a learner's Linux, CI, the course
# VM): provision.sh installs them, build-box puts them in the VM image next to its own system
# packages (so provisioning the VM needs no apt).
course_apt=(busybox-static python3 python3-venv make iproute2 procps util-linux attr tini iptables skopeo curl jq debootstrap strace
            docker-compose)   # attr: getfattr (chapter 04)
# tini: its static build is lab run --init's PID 1
# iptables: chapter 09's NAT rules (masquerade, published ports), as docker writes them
# skopeo: chapter 10's other registry client (the tests fill their registry with it)
# curl, jq, debootstrap: chapter 10's lesson (a pull by hand; a Debian image made from scratch)
# strace: chapter 00's lesson (fork, exec, wait as system calls)
# docker-compose: chapter 07's third client (1.x, Python, over the Docker SDK)
bench_apt=(runc crun)   # make bench's baselines: installed by make bench on demand, in the VM's box always

# pyproject_list PYTHON KEY...: the items of pyproject.toml's lists at these dotted keys, one a line:
# project.optional-dependencies.course (what the course uses), build-system.requires (what building
# it needs). PYTHON is 3.11+ (tomllib), or a venv's 3.10 (pip's own copy of tomli).
lab_pyproject=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/pyproject.toml
pyproject_list() {
    "$1" - "$lab_pyproject" "${@:2}" <<'EOF'
import pathlib
import sys
try:
    import tomllib
except ImportError:
    from pip._vendor import tomli as tomllib
toml = tomllib.loads(pathlib.Path(sys.argv[1]).read_text())
for key in sys.argv[2:]:
    value = toml
    for part in key.split("."):
        value = value[part]
    print(*value, sep="\n")
EOF
}
