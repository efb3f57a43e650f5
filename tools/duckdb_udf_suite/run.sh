#!/usr/bin/env bash
# Run duckdb-python's tests/fast/udf through duckdb_subinterp, once per backend, and print the counts.
# usage: tools/duckdb_udf_suite/run.sh PATH/TO/duckdb-python [BACKEND...]   (default: duckdb auto processes subinterpreters)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(cd "${1:?the path of a duckdb-python checkout}" && pwd)"
shift
python="${PYTHON:-$here/../../.venv/bin/python}"
"$python" -c 'import pandas' 2>/dev/null || { echo "the suite needs pandas: $python -m pip install pandas" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$checkout"/tests/fast/udf/test_*.py "$here/conftest.py" "$work/"
for backend in "${@:-duckdb auto processes subinterpreters}"; do
    for one in $backend; do
        printf '%-16s ' "$one"
        (cd "$work" && DUCKDB_SUBINTERP_SUITE_BACKEND="$one" timeout 1800 "$python" -m pytest -q -p no:cacheprovider \
            -o timeout=120 . 2>&1 | tail -1) || true
    done
done
