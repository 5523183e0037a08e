#!/usr/bin/env bash
# Write requirements.lock: the exact version of every package the project and its test and
# flower extras need, for Python 3.11 on x86-64 Linux, except torch, which is installed first
# from its own pin (scripts/test.sh: torch==2.13.0; the Dockerfile: a CPU build).
#
#   ./scripts/lock.sh             # lock what the venv runs now (its versions are kept where
#                                 # they fit), adding what pyproject.toml newly asks for
#   ./scripts/lock.sh --upgrade   # resolve the newest versions pyproject.toml allows
#
# Run it after any change to the dependencies in pyproject.toml, then ./scripts/test.sh,
# and commit requirements.lock with the change.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH=${TORCH:-torch==2.13.0+cpu}
[ -x .venv/bin/python ] || python3 -m venv .venv
[ -x .venv/bin/uv ] || .venv/bin/pip install -q --disable-pip-version-check uv

# A fixed scratch folder (ignored by git), so the lock's "via" notes name the same path on
# every run and a re-lock shows only real changes.
work=build/lock
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
# torch is resolved as its CPU build (so the lock holds its dependencies, not CUDA's), but
# not written to the lock.
echo "$TORCH" > "$work/overrides.txt"
args=(
  pyproject.toml --extra test --extra flower
  --python-version 3.11 --python-platform x86_64-manylinux_2_28
  --override "$work/overrides.txt" --no-emit-package torch
  --output-file requirements.lock --quiet --custom-compile-command ./scripts/lock.sh
)
# Where the CPU wheel of torch comes from: a local wheel folder if this machine has one,
# else PyTorch's CPU index.
if [ -d /opt/wheels ] && ls /opt/wheels/torch-* >/dev/null 2>&1; then
  args+=(--find-links /opt/wheels)
else
  args+=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
if [ "${1:-}" = "--upgrade" ]; then
  args+=(--upgrade)
elif [ -x .venv/bin/pip ]; then
  # Keep the versions the suite runs with now (a package the venv lacks is resolved fresh).
  .venv/bin/pip freeze --all --exclude-editable 2>/dev/null | grep -v -e '^torch==' -e ' @ ' \
    > "$work/installed.txt" || true
  args+=(--constraint "$work/installed.txt")
fi
.venv/bin/uv pip compile "${args[@]}"
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) packages, torch excluded)"
