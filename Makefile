# One entry point: `make demo` sets everything up and runs the demo; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl

.PHONY: setup demo test test-fast lint clean

setup: $(VENV)/.installed

# torch first, pinned: on a CPU machine pip takes the local CPU wheel; the project's own range
# (torch>=2.4) is then already satisfied and pip never pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# make demo: the pretrained model (pretrained/reacher.pt); make demo TASK=pusher: the arm task's (pretrained/pusher.pt);
# make demo TRAIN=1: record and train a small one first
demo: setup
	$(BIN)/python tools/demo.py $(if $(TRAIN),train=true) $(if $(TASK),task=$(TASK))

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# the formatter and linter, as CI runs them (configured in pyproject.toml); ruff format . && ruff check --fix . applies them
lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) outputs/demo
