# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
# The CPU torch wheel is pinned here: a plain `torch` requirement would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.symgen-installed
DEMO_DIR ?= runs/demo

.PHONY: install demo test lint docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/symgen train flow --config configs/flow/spiral.yaml --out $(DEMO_DIR)
	$(VENV)/bin/symgen eval $(DEMO_DIR) --metrics test_nll samples
	@echo "demo finished: open $(DEMO_DIR)/report.md"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

test: install lint
	$(PY) -m pytest

docs: install
	$(PY) -m symgen.cli --markdown > docs/cli.md

clean:
	rm -rf $(VENV) runs .pytest_cache
