# The two front-door commands: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SAMPLES := data/samples/sohae

.PHONY: demo test lint typecheck samples clean install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(SAMPLES)/truth.json: $(STAMP) $(wildcard src/sohae_watch/samples*.py)
	$(BIN)/sohae-watch samples $(SAMPLES)

samples: $(SAMPLES)/truth.json

demo: $(SAMPLES)/truth.json
	$(BIN)/sohae-watch diff 2019-02-16 2019-03-02 --site sohae --out out/demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy src

test: lint typecheck
	$(BIN)/python -m pytest -q

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
