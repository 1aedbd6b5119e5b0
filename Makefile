# The course's commands. Run them as root on Linux (or in the course VM).
VENV   ?= .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo test check progress skeleton notebooks vm-test vm-lessons bench vm-bench clean

setup:              ## system packages, the venv, and the busybox image
	VENV=$(VENV) bash tools/provision.sh
	LAB_IMPL=solutions $(VENV)/bin/lab run --rm --network none busybox true

demo: setup         ## the reference runtime running containers (CHAPTER=NN: that chapter's feature, live)
	VENV=$(VENV) bash tools/demo.sh $(CHAPTER)

# Tests run in JOBS parallel sessions (pytest-xdist), two per CPU core and at most 4, as lab progress
# runs the chapters: a test spends much of its time waiting (for a container to start or end, for the
# kernel) while another session can use the CPU. Each takes a module at a time (--dist loadfile), or one
# test of the course's checks (tests/conftest.py says which, and in what order: --no-loadscope-reorder),
# and has its own LAB_ROOT, network, mounts and cgroups (chapters/conftest.py).
JOBS ?= $(shell echo $$((2 * $$(nproc))))
test:               ## the whole verification: every chapter on the reference, the course's self-checks, the notebooks
	@test -x $(VENV)/bin/pytest || { echo "make test: run 'make setup' first"; exit 1; }
	@$(VENV)/bin/python -c "import xdist" 2>/dev/null || { echo "make test: the venv has no pytest-xdist: run 'make setup'"; exit 1; }
	LAB_IMPL=solutions $(VENV)/bin/pytest -n $(JOBS) --maxprocesses 4 --dist loadfile --no-loadscope-reorder chapters tests notebooks -p nbval --nbval; \
	status=$$?; [ $$status -ne 5 ] || echo "make test: pytest collected no test"; exit $$status

check:              ## the course checks itself: lab/ is the generated skeleton, every chapter test fails on it
	python3 tools/make_skeleton.py --check
	LAB_IMPL=solutions $(VENV)/bin/pytest tests/test_course*.py -q

progress:           ## your progress through the chapters (runs your lab/ against the chapter tests)
	$(VENV)/bin/lab progress

skeleton:           ## regenerate lab/ from solutions/lab/ (overwrites your work in lab/!)
	python3 tools/make_skeleton.py

vm-test:            ## boot the course VM from a locally built box and run `make test` inside it (slow)
	bash tools/vm-test

V2_LESSONS = chapters/02_cgroups/README.md chapters/06_exec/README.md chapters/08_security/README.md
vm-lessons:         ## record the lessons that show cgroup v2's files in the course VM, and copy them back (then: git diff)
	LAB_VM_TEST="LAB_RECORD_LESSONS=1 pytest tests/test_lessons.py -q -p no:cacheprovider" \
	LAB_VM_FETCH="$(V2_LESSONS)" bash tools/vm-test

bench: setup        ## how fast a container starts: lab against runc, crun and the kernel (results/bench/)
	@bash -c 'source tools/packages.sh; for p in "$${bench_apt[@]}"; do command -v $$p >/dev/null || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$${bench_apt[@]}" >/dev/null; break; }; done'
	$(VENV)/bin/python tools/bench.py $(BENCH)

vm-bench:           ## make bench inside the course VM (cgroup v2, emulated CPU): results/bench-vm/ (slow)
	LAB_VM_TEST='make bench BENCH="--runs 10 --quick --out results/bench-vm"' LAB_VM_FETCH=results/bench-vm bash tools/vm-test

notebooks:          ## re-run the notebooks with the reference and store their outputs (what nbval checks)
	$(VENV)/bin/python tools/run_notebooks.py

clean:
	rm -rf $(VENV) *.egg-info
