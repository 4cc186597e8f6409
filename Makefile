# `make run`: set up, then train TO-FLOW on checkerboard (about 2 minutes on a 2-core CPU, once set up).
# `make test`: set up, then run every test. `make lint`: ruff, the import layers, the docstrings.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/toy_checkerboard_quick.yaml

.PHONY: run test lint bench setup clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,lint]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) -m toflow.trainers.run $(CONFIG) $(ARGS)

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --cov=toflow --cov-report=term tests  # two workers, one thread each; line coverage of toflow/

lint: setup
	$(VENV)/bin/ruff check toflow tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pydoclint toflow

bench: setup
	$(PY) bench/toy_modes.py

clean:
	rm -rf $(VENV) runs
