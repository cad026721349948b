# make run   -- train inverted_pendulum by reward modeling (200 oracle labels)
# make test  -- the CPU test suite
# make bench -- throughput against brax's ppo.train; checkpoint cost; sweep scaling
# Each target creates .venv and installs rrm with its pinned dependencies first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
WORKDIR ?= runs/inverted_pendulum_$(shell date +%Y%m%d_%H%M%S)

.PHONY: install run run-true test bench clean

# Mesa's EGL: offscreen rendering of evaluation videos on a CPU (rrm/video.py).
SYSTEM_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri

$(STAMP): setup.py
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq $(SYSTEM_PACKAGES); \
	  else \
	    echo "rrm: evaluation videos need Mesa's EGL; on Debian/Ubuntu:" \
	         "sudo apt-get install $(SYSTEM_PACKAGES)"; \
	  fi; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m launch.train --config=experiments/configs/inverted_pendulum.py --workdir=$(WORKDIR)

run-true: $(STAMP)
	$(PY) -m launch.train --config=experiments/configs/inverted_pendulum.py --config.reward.source=true --workdir=$(WORKDIR)_true

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=15 tests

bench: $(STAMP)
	$(PY) -m benchmarks.throughput
	$(PY) -m benchmarks.throughput --config=experiments/configs/inverted_pendulum.py:sac
	$(PY) -m benchmarks.checkpoint
	$(PY) -m benchmarks.sweep_scaling --skip_sequential_above=4

clean:
	rm -rf $(VENV) runs .pytest_cache
