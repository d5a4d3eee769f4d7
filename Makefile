# One command runs every test: `make test`.
# It installs ferrocorn (a release build of the Rust extension) and the test
# dependencies into the current Python environment, then runs the Rust unit
# tests and the end-to-end pytest suite against the installed `ferrocorn`.

PYTHON ?= python3

.PHONY: test install rust-test py-test bench docs

test: install rust-test py-test

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check ".[test]"

rust-test:
	cargo test --quiet

py-test:
	$(PYTHON) -m pytest -q tests/python

docs:
	FERROCORN_WRITE_DOCS=1 cargo test --quiet settings::docs

bench:
	$(PYTHON) bench/run.py
