#!/usr/bin/env bash
# System packages and the Python environment for the course. One script for every place the
# course runs: `make setup` on a learner's Linux, the course VM (Vagrantfile) and CI (.ci/run).
# Run it as root from anywhere; it works on Debian 12 and Ubuntu 24.04 (apt).
#   VENV=DIR   where the venv goes (default .venv; the course VM uses /opt/lab-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/packages.sh      # course_apt (the apt packages), pyproject_list (the Python ones)
venv=${VENV:-.venv}

if command -v apt-get >/dev/null; then
    missing=()
    for p in "${course_apt[@]}"; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "provision: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
else
    echo "provision: no apt-get here; install these yourself: ${course_apt[*]}" >&2
fi

# The distribution's Python (/usr/bin/python3) when there is one, rather than the first python3
# on PATH: Debian and Ubuntu build theirs with profile-guided optimisation, and a pyenv build
# (as on the course's CI machines) has none. Measured on the same 3.11: lab run 54 ms against
# 67, pytest and the notebooks' kernels faster in the same way. PYTHON=... chooses another.
python=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
if [ ! -x "$venv/bin/python" ]; then
    echo "provision: creating $venv with $($python --version)"
    "$python" -m venv "$venv"
fi
# Install the course into the venv, again only when pyproject.toml changed since last time.
# Without build isolation, pip needs the network only for what is missing: once set up (or
# in the course VM, whose venv comes with everything), `make setup` works offline.
stamp=$venv/.provisioned-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    pip=("$venv/bin/pip" install -q --disable-pip-version-check)
    # Without build isolation, what building the course needs must be in the venv first (pip
    # takes what is already there: no network then).
    build_requires=$(pyproject_list "$venv/bin/python" build-system.requires)
    mapfile -t build_requires <<<"$build_requires"
    "${pip[@]}" "${build_requires[@]}"
    # compat: the editable install is a plain path in a .pth file; the default mode's import hook
    # costs every Python start (pytest, the notebooks' kernels) ~15 ms here, 0.2 s in the emulated VM.
    "${pip[@]}" --no-build-isolation --config-settings editable_mode=compat -e '.[course]'
    rm -f "$venv"/.provisioned-*
    touch "$stamp"
fi
# Matplotlib builds its font cache (~/.cache/matplotlib) the first time a chart is drawn; past 5 s
# (an emulated CPU, as CI's course VM) it says so in red under notebook 00's chart. Built here.
ls ~/.cache/matplotlib/fontlist-*.json >/dev/null 2>&1 || "$venv/bin/python" -c "import matplotlib.font_manager"
# Chapter 07's clients: the Docker SDK (in [course]) and the docker command, from Debian's docker.io.
[ -x "$venv/bin/docker" ] || bash tools/deb-binary docker.io /usr/bin/docker "$venv/bin/docker"
# Chapter 10's tests start a registry of their own: the distribution's, from Debian's docker-registry.
[ -x "$venv/bin/docker-registry" ] || bash tools/deb-binary docker-registry /usr/bin/docker-registry "$venv/bin/docker-registry"
# The `lab` command starts Python without its site machinery (-S): lab needs only the standard
# library and this folder, and site costs a few ms of every `lab run`. `lab progress`, which
# runs pytest, turns site on itself (course.py).
cat > "$venv/bin/lab" <<EOF
#!$(cd "$venv" && pwd)/bin/python3 -S
import sys
sys.path.insert(0, "$(pwd)")
from lab_impl import main
main()
EOF
echo "provision: done ($("$venv/bin/python" --version), lab at $venv/bin/lab)"
