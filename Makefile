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

bench:
	.venv/bin/python bench/boot_storm.py
	.venv/bin/python bench/wrk_boot.py
	.venv/bin/python bench/store_writers.py
	.venv/bin/python bench/inventory_pages.py
