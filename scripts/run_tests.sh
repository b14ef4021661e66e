#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export FREENET_TOOLS="${FREENET_TOOLS:-$HOME/.cache/freenet-deploy}"
exec .venv/bin/python -m pytest -q --timeout=1800 --durations=20 -p no:cacheprovider "$@"
