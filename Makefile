# Two entry points on a fresh Debian 12 machine (as root, or with sudo for apt):
#   make compare   installs what the main job needs (venv, SwiftShader) and runs it on embedded defaults
#   make test      installs everything the suite needs and runs the whole test suite (what CI runs)
#   make test-fast the same without the tests marked `slow` (for development; CI runs them all)
# Every setup step is idempotent: a second run only checks.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
export FREENET_TOOLS ?= $(HOME)/.cache/freenet-deploy

.PHONY: setup venv system web tools-compare tools-test compare test test-fast clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: the pinned CPU build (see pyproject.toml) must win before timm resolves
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# System tools. The main job needs only SwiftShader (the LiteRT GPU-delegate check); the test suite
# needs every tool. apt-based scripts run one after another (dpkg's lock), but beside the venv's
# pip install: `make -j2` overlaps the wheel downloads with apt.
tools-compare:
	bash scripts/setup_swiftshader.sh

tools-test: tools-compare
	bash scripts/setup_postgres.sh
	bash scripts/setup_chromium.sh
	bash scripts/setup_android_tools.sh
	bash scripts/setup_swift.sh

system: tools-test

# The browser runner (web_app/): npm ci from the lockfile, then the type-checked build into
# web_app/dist, served by `freenet serve` at /run. Skipped while dist is newer than its sources.
WEB_SRC = $(wildcard web_app/src/*.ts web_app/src/*.json web_app/src/adapters/*.ts) web_app/index.html web_app/app.css \
          web_app/build.mjs web_app/tsconfig.json web_app/package.json web_app/package-lock.json
web: web_app/dist/BUILD_INFO.json
web_app/dist/BUILD_INFO.json: $(WEB_SRC)
	cd web_app && npm ci --no-audit --no-fund && npm run build

setup:
	$(MAKE) -j2 venv tools-test web

compare:
	$(MAKE) -j2 venv tools-compare web
	$(VENV)/bin/freenet compare

test:
	$(MAKE) -j2 venv tools-test web
	bash scripts/run_tests.sh

test-fast:
	$(MAKE) -j2 venv tools-test web
	bash scripts/run_tests.sh -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
