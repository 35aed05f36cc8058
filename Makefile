# Two commands: `make dev` runs the connector, `make test` runs the whole suite on Apache Kafka.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: dev test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[embedded,rocksdb,fast,analytics,dev,bench]'
	@touch $(STAMP)

dev: $(STAMP)
	$(VENV)/bin/loyalty-connector dev

lint: $(STAMP)
	$(VENV)/bin/ruff check connector tests benchmarks analytics
	$(VENV)/bin/ruff format --check connector tests benchmarks analytics
	$(VENV)/bin/mypy connector

test: lint
	$(VENV)/bin/pytest -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/decode.py

clean:
	rm -rf $(VENV) .dev .data .pytest_cache .mypy_cache .ruff_cache
