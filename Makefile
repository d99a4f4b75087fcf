# Quick start: `make demo` (runs the main job on a built-in phantom, CPU) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU build of torch first, so that pip does not pull a CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	# the distributed extra (Ray) too, so that the Ray backend is tested in CI
	$(BIN)/pip install --quiet -e ".[dev,distributed]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m bayes_inr.demo --out out/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check bayes_inr tests analysis

clean:
	rm -rf $(VENV) out
