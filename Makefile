# dagd — `make run` and `make test` work on a fresh Debian machine (root, python3, node, npm).
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: run test test-deps dagu-oracle lint typecheck conformance web web-test deb rpm bench clean

# dagd._spawn (setup.py: vfork + join the step's cgroup before exec) is built with gcc and the
# Python headers; without them dagd still installs and uses a sh trampoline (one exec more a step).
$(VENV_STAMP): pyproject.toml constraints.txt setup.py dagd/_spawn.c
	@python3 -c 'import ensurepip, venv' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	@command -v gcc >/dev/null && python3 -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' 2>/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq gcc libc6-dev python3-dev; } \
		|| echo "make: no C compiler or Python headers: dagd._spawn is not built (steps join their cgroup through sh)"
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m compileall -q dagd dagctl
	@touch $@

# The web UI (web/: Vite + React + Mantine) is built into dagd/http/ui, which dagd serves.
# npm ci installs exactly package-lock.json; the build reruns when a source file changes.
UI_INDEX := dagd/http/ui/index.html
NPM_STAMP := web/node_modules/.installed
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.app.json

$(NPM_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(UI_INDEX): $(NPM_STAMP) $(WEB_SOURCES)
	cd web && npm run --silent build

web: $(UI_INDEX)

web-test: $(NPM_STAMP)
	cd web && npx vitest run

# dagd on examples/, state under .dagd-run/, web UI and API on http://127.0.0.1:8090; drive it
# from another terminal with
#   DAGD_SOCKET=$(PWD)/.dagd-run/dagd.sock .venv/bin/dagctl list
RUN_DIR := $(CURDIR)/.dagd-run

run: $(VENV_STAMP) $(UI_INDEX)
	@$(PY) -m dagctl validate examples/*.yaml
	@mkdir -p $(RUN_DIR)
	@echo "dagd on examples/, web UI on http://127.0.0.1:8090 — in another terminal: DAGD_SOCKET=$(RUN_DIR)/dagd.sock .venv/bin/dagctl list"
	DAGD_STATE_DIR=$(RUN_DIR)/state exec $(PY) -m dagd.daemon --user --dags examples --socket $(RUN_DIR)/dagd.sock

lint: $(VENV_STAMP)
	.venv/bin/ruff check dagd dagctl tests packaging bench
	.venv/bin/ruff format --check dagd dagctl tests packaging bench

typecheck: $(VENV_STAMP)
	.venv/bin/mypy
	.venv/bin/lint-imports

# Debian packages the tests drive for real, as binary:package: tmux (terminal view), chromium (the browser tests; Playwright drives /usr/bin/chromium and
# never downloads one), curl (HTTP requests made as other local users), lintian, rpm and rpmlint
# (the package checks), systemd-analyze (the unit's security score), mmdebstrap and
# systemd-nspawn (a Debian 12 root booted under a real systemd for the installed package), podman,
# runc and busybox-static (container steps, in an image built from busybox: no registry is reachable),
# jq (jq.filter steps run Debian's jq), openssh-server (ssh.run and sftp steps against a real sshd),
# postgresql (postgres.query/import steps against a real server; its binaries are not on PATH),
# redis-server (redis.* steps).
APT_TEST_PACKAGES := tmux:tmux chromium:chromium curl:curl lintian:lintian rpm:rpm rpmlint:rpmlint \
	systemd-analyze:systemd mmdebstrap:mmdebstrap systemd-nspawn:systemd-container \
	podman:podman runc:runc busybox:busybox-static jq:jq \
	sshd:openssh-server redis-server:redis-server git:git

test-deps:
	@missing=""; for pair in $(APT_TEST_PACKAGES); do [ -x /usr/bin/$${pair%%:*} ] || [ -x /usr/sbin/$${pair%%:*} ] || missing="$$missing $${pair##*:}"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# Dagu 1.30.2 as published on the npm registry (GPL-3.0: the differential tests run it; it is
# never shipped), cached in /var/cache/dagd-bench; npm checks the tarball's integrity.
dagu-oracle: $(VENV_STAMP)
	$(PY) -c "from tests.dagu_oracle import dagu_binary; dagu_binary()"

# The package tests install the .deb on this machine and own the system paths while they run:
# they go after the rest of the suite, alone.
test: lint typecheck test-deps dagu-oracle web web-test
	$(PY) -m pytest -n 2 -p no:cacheprovider tests --ignore=tests/packaging
	$(PY) -m pytest -p no:cacheprovider tests/packaging

# dist/dagd_<version>-1_amd64.deb and dist/dagd-<version>-1.x86_64.rpm (packaging/build.py, nfpm)
deb: $(VENV_STAMP) $(UI_INDEX)
	$(PY) packaging/build.py deb

rpm: $(VENV_STAMP) $(UI_INDEX)
	$(PY) packaging/build.py rpm

# Benchmarks (not part of make test): ratios to this machine's own limits, written to
# bench/RESULTS.md. wrk (Debian) drives the HTTP figures.
bench: $(VENV_STAMP) $(UI_INDEX)
	@[ -x /usr/bin/wrk ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(PY) bench/run.py

conformance: $(VENV_STAMP)
	$(PY) -m pytest -n 2 tests/conformance -rs

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis web/node_modules dagd/http/ui test-artifacts dist
