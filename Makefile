# One command runs every test: `make test`.
# It installs ferrocorn (a release build of the Rust extension) and the test
# dependencies into the current Python environment, then runs the Rust unit
# tests and the end-to-end pytest suite against the installed `ferrocorn`.

PYTHON ?= python3
PIP = $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: test install rust-test py-test lint lint-deps dev wheel bench docs ci-deps

test: install rust-test py-test

install:
	$(PIP) ".[test]"

rust-test:
	cargo test --quiet

py-test:
	$(PYTHON) -m pytest -q tests/python

# The machine packages the tests need beyond Python's (CI runs this before
# `make test`, as root), as command:Debian-package: systemd's own tools for
# the socket-activation and unit-file tests, wrk for the soak test and the
# benchmarks, curl and openssl for the TLS tests, HAProxy, nginx and
# iproute2 for the deployment files and the many-hosts test; nghttp2-client
# (h2load, nghttp) for the HTTP/2 tests and benchmarks. Without root it
# only says what is missing; `make test` itself needs no root.
CI_TOOLS = systemd-socket-activate:systemd systemd-analyze:systemd wrk:wrk curl:curl openssl:openssl \
	haproxy:haproxy nginx:nginx ip:iproute2 h2load:nghttp2-client nghttp:nghttp2-client
ci-deps:
	@missing=""; packages=""; for t in $(CI_TOOLS); do cmd=$${t%%:*}; pkg=$${t#*:}; \
		command -v $$cmd >/dev/null 2>&1 || { missing="$$missing $$cmd"; packages="$$packages $$pkg"; }; done; \
	if [ -z "$$missing" ]; then echo "ci-deps: every tool present"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "ci-deps: installing$$packages (for$$missing)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$packages; \
	else echo "ci-deps: missing$$missing; run 'make ci-deps' as root (apt-get install$$packages)"; exit 1; fi

# Formatting and lints, Rust and Python; any finding fails.
lint: lint-deps
	cargo fmt --check
	cargo clippy --quiet --all-targets -- -D warnings
	$(PYTHON) -m ruff format --check python tests bench
	$(PYTHON) -m ruff check python tests bench

lint-deps:
	$(PIP) ruff==0.17.6
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy rustfmt

# A development environment in .venv: the extension built in place by
# `maturin develop` (a debug build, quick to rebuild; Python edits take
# effect without reinstalling) and the test dependencies. Then
# `. .venv/bin/activate && pytest tests/python`.
VENV ?= .venv
dev:
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check maturin ruff==0.17.6
	@# A module built for one Python version (before the abi3 build) would be
	@# imported before the abi3 one: it goes.
	rm -f python/ferrocorn/_ferrocorn.cpython-*.so
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --quiet --extras test

# One wheel for every CPython 3.9+ on Linux (abi3), release build, into
# dist/: users install it with no Rust toolchain. maturin tags it with the
# oldest manylinux policy this machine's glibc and the extension's symbols
# allow (it checks them as auditwheel does). maturin comes from `make dev`
# (or MATURIN=...; tests/python/test_wheel.py gives its own and WHEEL_DIR).
MATURIN ?= $(VENV)/bin/maturin
WHEEL_DIR ?= dist
wheel:
	$(MATURIN) build --release --strip --out $(WHEEL_DIR)

docs:
	FERROCORN_WRITE_DOCS=1 cargo test --quiet settings::docs

bench:
	$(PYTHON) bench/run.py
