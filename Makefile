# The two commands of the README: `make demo` and `make test`. Both build .venv when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test services browser check lint typecheck bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,ray,ai,embed,lancedb,dev]'
	touch $(STAMP)

demo: $(STAMP)
	cd examples/demo && ../../$(BIN)/tidesync run demo.json --report ../../out/demo-report.json
	@echo "demo output: examples/demo/out/ (report: out/demo-report.json)"

services:
	.ci/services

browser:
	.ci/browser

test: $(STAMP) services browser
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache
