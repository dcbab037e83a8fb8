.PHONY: setup test test-fast lint format lab lab-down bench

setup:
	bash scripts/setup.sh

test: setup
	.venv/bin/pytest -q -p no:cacheprovider tests

test-fast:
	.venv/bin/pytest -q -m "not e2e and not peer" tests

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

lab: setup
	.venv/bin/mayu lab up --machines 3

lab-down:
	.venv/bin/mayu lab down

# Every benchmark under bench/, one after another (docs/benchmarks.md records their figures).
# metrics_overhead compares this tree with another checkout: BASE=DIR (default: this tree).
BENCHES := $(filter-out bench/metrics_overhead.py,$(sort $(wildcard bench/*.py)))
BASE ?= .

bench: setup
	set -e; for b in $(BENCHES); do echo "== $$b"; .venv/bin/python $$b; done
	.venv/bin/python bench/metrics_overhead.py --compare $(BASE)
