#!/usr/bin/env bash
# Build the sdist and the wheel, install the wheel built *from the sdist* into a scratch
# folder, and run the SQLite tests from the unpacked sdist against that install: proves the
# sdist holds everything its tests need and that the package it builds works.
# Usage: [PYTHON=.venv/bin/python] tools/check_sdist.sh [PYTEST ARGS...]  (needs the dev extra)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(command -v "${PYTHON:-.venv/bin/python}" || echo "${PYTHON:-.venv/bin/python}")
case "$PY" in /*) ;; *) PY="$PWD/$PY" ;; esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

quiet() { "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; return 1; }; }

quiet "$PY" -m build --sdist -o "$work/dist" .
sdist=$(ls "$work"/dist/sessiondb-*.tar.gz)
tar xzf "$sdist" -C "$work"
src=$(ls -d "$work"/sessiondb-*/)
# the wheel is built from the unpacked sdist, as pip does when it installs one
quiet "$PY" -m build --wheel -o "$work/dist" "$src"
"$PY" -m pip install -q --no-deps --target "$work/site" "$work"/dist/sessiondb-*.whl
cd "$src"
found=$(PYTHONPATH="$work/site" "$PY" -c "import sessiondb; print(sessiondb.__file__)")
case "$found" in "$work/site/"*) ;; *) echo "sdist check: imported $found, not the built wheel" >&2; exit 1 ;; esac
# a sample that needs what the sdist must carry besides the package: the API and contract
# suite, the examples, the docs' module map; any pytest arguments replace it (e.g. `tests`)
[ "$#" -gt 0 ] || set -- tests/test_api.py tests/test_contract.py tests/test_examples.py \
  tests/test_layout.py
echo "sdist check: $(basename "$sdist") builds; running its SQLite tests against its wheel"
env -u SESSIONDB_REQUIRE_GUIDE PYTHONPATH="$work/site" SESSIONDB_TEST_BACKENDS=sqlite \
  "$PY" -m pytest -q -p no:cacheprovider -n auto -m "not slow and not faults" -x "$@"
