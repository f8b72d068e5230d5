# Two commands from a machine that has only Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fusionlab-installed
TORCH_VERSION ?= 2.13.0

.PHONY: demo test install bench clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch goes in first and pinned: a bare requirement with no torch present pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n auto --maxprocesses 4 --dist loadgroup $(PYTEST_ARGS)

# The demo: synthetic RGB-D data -> part of the baseline grid (DEMO_CELLS) and a CEN sweep on Ray -> the report tables ->
# the best model promoted to the registry. A fresh DEMO_WORKDIR every time (the MLflow store, sweeps, reports).
DEMO_WORKDIR ?= fusionlab-demo
DEMO_DATA    ?= data/synthetic
FUSIONLAB    := $(VENV)/bin/fusionlab --workdir $(DEMO_WORKDIR)
DEMO_MODEL   := synthetic-rgbd-segmentation
# The grid runs on Ray as one Tune experiment (its cells two at a time on 2 cores, each a Ray Train run), as the
# sweep does. DEMO_CELLS: four of the grid's nine cells, the unimodal baselines and two fusions (each cell is ~25 s of
# start-up on 2 cores); `make demo DEMO_CELLS=` runs all nine (docs/study.md has that table).
# `make demo DEMO_GRID_ARGS=--local` trains the cells one after another in-process instead.
DEMO_CELLS     ?= rgb-only,depth-only,late-fusion,cen
DEMO_GRID_ARGS ?=

demo: $(STAMP)
	@echo "== 1/6  the synthetic RGB-D dataset ($(DEMO_DATA))"
	rm -rf $(DEMO_WORKDIR)
	test -f $(DEMO_DATA)/manifest.json || $(FUSIONLAB) data synth --out $(DEMO_DATA) --train 64 --val 16 --test 16 --size 120x160 --seed 0
	$(FUSIONLAB) data inspect $(DEMO_DATA) --verify
	@echo "== 2/6  the grid's cells $(or $(DEMO_CELLS),all): unimodal baselines and fusion schemes on Ray"
	$(FUSIONLAB) grid experiments/synthetic_grid.yaml $(if $(DEMO_CELLS),--cells $(DEMO_CELLS)) $(DEMO_GRID_ARGS)
	@echo "== 3/6  a CEN sweep: Ray Tune + Optuna + ASHA over lambda and theta"
	$(FUSIONLAB) tune experiments/synthetic_cen_search.yaml
	@echo "== 4/6  the reports"
	$(FUSIONLAB) report --experiment synthetic-cen-search
	$(FUSIONLAB) report --experiment synthetic-grid
	@echo "== 5/6  promote the best model of both to the registry"
	$(FUSIONLAB) promote --experiment synthetic-grid --experiment synthetic-cen-search --alias champion
	$(FUSIONLAB) registry $(DEMO_MODEL)
	@echo "== 6/6  the MLflow UI on this store:"
	@echo "   $(VENV)/bin/mlflow server --backend-store-uri sqlite:///$(abspath $(DEMO_WORKDIR))/mlflow.db --host 127.0.0.1 --port 5000 --workers 1"
	@echo "   then open http://127.0.0.1:5000, switch to Model training (experiments synthetic-grid and synthetic-cen-search; model $(DEMO_MODEL))"

bench: $(STAMP)
	$(PY) bench/step_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info platform/*.egg-info $(DEMO_WORKDIR)
