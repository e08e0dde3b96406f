#!/usr/bin/env bash
# The Python client's checks: a venv with the package and its pinned-minimum test tools, then
# ruff, mypy --strict and pytest (against real `lockio serve` clusters: `cargo build` first, or
# set LOCKIO_BIN). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"

venv="${LOCKIO_PY_VENV:-../../target/python-venv}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "httpx>=0.23" "pytest>=7.4" "mypy>=1.8" "ruff>=0.4"
"$venv/bin/python" -m pip install -q --disable-pip-version-check ".[test]"

echo "== ruff"
"$venv/bin/ruff" check src tests
echo "== mypy --strict"
"$venv/bin/mypy" --strict src/lockio
echo "== pytest"
"$venv/bin/pytest" -q -p no:cacheprovider tests "$@"
