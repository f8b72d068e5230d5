# Two commands from a machine that has only Python 3.11: `make test` (and, later, `make demo`).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fusionlab-installed
TORCH_VERSION ?= 2.13.0

.PHONY: test install bench clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch goes in first and pinned: a bare requirement with no torch present pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/step_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info platform/*.egg-info
