#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it. Extra arguments go to pytest.
# pytest-xdist runs it on FREENET_TEST_WORKERS processes (default 2, the CI machine's cores; 0 runs
# it in this process). --dist loadgroup keeps each file marked with an xdist_group on one worker;
# expensive read-only fixtures are built once per run for all workers (run_once in tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export FREENET_TOOLS="${FREENET_TOOLS:-$HOME/.cache/freenet-deploy}"
exec .venv/bin/python -m pytest -q --timeout=1800 --durations=25 -p no:cacheprovider \
  -n "${FREENET_TEST_WORKERS:-2}" --dist loadgroup "$@"
