# `make run`: set up, then train TO-FLOW on checkerboard (a few minutes on a CPU).
# `make test`: set up, then run every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/toy_checkerboard_quick.yaml

.PHONY: run test bench setup clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) -m toflow.trainers.run $(CONFIG) $(ARGS)

test: setup
	$(PY) -m pytest tests

bench: setup
	$(PY) bench/toy_modes.py

clean:
	rm -rf $(VENV) runs
