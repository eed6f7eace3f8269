# The README's commands: `make quickstart` (the main job), `make demo` and `make test`. All set up .venv/ first;
# re-running them skips what is already installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build: an unpinned torch pulls several GB of CUDA packages. A torch that .venv (or, through
# --system-site-packages, the Python that creates it) already has, a CUDA build say, is kept.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup quickstart demo test lint browser

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || { $(PYTHON) -c "import torch" 2>/dev/null \
		&& $(PYTHON) -m venv --system-site-packages $(VENV) || $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,ray]"
	# --no-deps: zennit asks for torchvision (a CUDA build that does not load with the CPU torch; see
	# interp/_compat.py), ocatari and hackatari for numpy<2 and opencv-python. What they import is in pyproject.toml.
	$(BIN)/python -m pip install -q --no-deps zennit==0.5.1 ocatari==2.2.1 hackatari==0.0.6
	$(BIN)/python -m interp._compat --install-pth
	@touch $(STAMP)

quickstart: setup
	$(BIN)/interp quickstart --out runs/quickstart

demo: setup
	$(BIN)/interp demo --out runs/demo

test: setup browser
	$(BIN)/python -m pytest -q

# The report is tested in a real headless browser: Debian's chromium (driven through playwright's Python API).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

lint: setup
	$(BIN)/ruff check .
