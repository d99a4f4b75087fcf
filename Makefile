# Quick start: `make demo` (runs the main job on a built-in phantom, CPU) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU build of torch first, so that pip does not pull a CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	# the distributed extra (Ray) too, so that the Ray backend is tested in CI; docs for make docs
	$(BIN)/pip install --quiet -e ".[dev,distributed,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m bayes_inr.demo --out out/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10
	$(MAKE) docs

# the documentation site: every warning is an error, the tutorial notebook and the code cells
# of the pages are executed, documented commands are parsed (docs/_ext/cli_check.py)
docs: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

lint: $(STAMP)
	$(BIN)/ruff check bayes_inr tests analysis

clean:
	rm -rf $(VENV) out docs/_build docs/api/generated docs/api/index.rst
