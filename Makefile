# dagd — `make run` and `make test` work on a fresh Debian machine (root, python3, node, npm).
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: run test test-deps lint typecheck conformance clean

$(VENV_STAMP): pyproject.toml constraints.txt
	@python3 -c 'import ensurepip, venv' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m compileall -q dagd dagctl
	@touch $@

# dagd on examples/, state under .dagd-run/, HTTP API on http://127.0.0.1:8090 (the web UI is
# not built yet); drive it from another terminal with
#   DAGD_SOCKET=$(PWD)/.dagd-run/dagd.sock .venv/bin/dagctl list
RUN_DIR := $(CURDIR)/.dagd-run

run: $(VENV_STAMP)
	@$(PY) -m dagctl validate examples/*.yaml
	@mkdir -p $(RUN_DIR)
	@echo "dagd on examples/, API on http://127.0.0.1:8090/api/v1/dags — in another terminal: DAGD_SOCKET=$(RUN_DIR)/dagd.sock .venv/bin/dagctl list"
	DAGD_STATE_DIR=$(RUN_DIR)/state exec $(PY) -m dagd.daemon --user --dags examples --socket $(RUN_DIR)/dagd.sock

lint: $(VENV_STAMP)
	.venv/bin/ruff check dagd dagctl tests
	.venv/bin/ruff format --check dagd dagctl tests

typecheck: $(VENV_STAMP)
	.venv/bin/mypy
	.venv/bin/lint-imports

# Debian packages the tests drive for real: tmux (terminal view), time (GNU time: per-step rusage).
APT_TEST_PACKAGES := tmux time

test-deps:
	@missing=""; for p in $(APT_TEST_PACKAGES); do [ -x /usr/bin/$$p ] || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

test: lint typecheck test-deps
	$(PY) -m pytest -n 2 -p no:cacheprovider tests

conformance: $(VENV_STAMP)
	$(PY) -m pytest -n 2 tests/conformance -rs

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
