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

# The demo: LFBM (flow prior + generator + short-run Langevin inference) on the embedded 8x8 digits.
# One thread per process: these models are tiny and thread start-up dominates.
# 800 of the config's 1200 steps (the LFBM experiments keep 1200): samples are already clearly digits
# and training + evaluation stay well under 3 minutes on 2 cores (README: measured times).
DEMO_SETS ?= --set train.steps=800 --set train.log_every=20
demo: install
	rm -rf $(DEMO_DIR)
	OMP_NUM_THREADS=1 $(VENV)/bin/symgen train lfbm --config configs/lfbm/digits.yaml --out $(DEMO_DIR) $(DEMO_SETS)
	OMP_NUM_THREADS=1 $(VENV)/bin/symgen eval $(DEMO_DIR) --metrics samples recon_mse inpaint_mse interpolation_prior interpolation_posterior latent_density fd_clf
	@echo "demo finished: open $(DEMO_DIR)/report.md"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

test: install lint
	$(PY) -m pytest -q

docs: install
	$(PY) -m symgen.cli --markdown > docs/cli.md

clean:
	rm -rf $(VENV) runs .pytest_cache
