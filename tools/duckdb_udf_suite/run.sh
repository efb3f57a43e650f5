#!/usr/bin/env bash
# Run duckdb-python's tests that register UDFs through duckdb_subinterp, once per backend, and print the counts:
# first tests/fast/udf, then every other test file that calls create_function.
# usage: tools/duckdb_udf_suite/run.sh PATH/TO/duckdb-python [BACKEND...]   (default: duckdb auto processes subinterpreters)
# DUCKDB_SUBINTERP_SUITE_OUT=DIR keeps the per-backend JSON reports there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(cd "${1:?the path of a duckdb-python checkout}" && pwd)"
shift
python="${PYTHON:-$here/../../.venv/bin/python}"
"$python" -c 'import pandas' 2>/dev/null || { echo "the suite needs pandas: $python -m pip install pandas" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out="${DUCKDB_SUBINTERP_SUITE_OUT:-$work/reports}"
mkdir -p "$out" "$work/udf"
cp "$checkout"/tests/fast/udf/test_*.py "$here/conftest.py" "$work/udf/"
# The other files keep duckdb-python's own conftest (their fixtures) beside them.
cp -r "$checkout/tests" "$work/tests"
others=$(cd "$work" && grep -rl --include='test_*.py' create_function tests | grep -v '^tests/fast/udf/' | sort)
backends="${*:-duckdb auto processes subinterpreters}"
run() {  # run SUITE BACKEND DIR FILES...
    local suite="$1" backend="$2" dir="$3"
    shift 3
    printf '%-7s %-16s ' "$suite" "$backend"
    # The plugin's count of the tests that register UDFs, then pytest's count of them all.
    (cd "$dir" && PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" DUCKDB_SUBINTERP_SUITE_BACKEND="$backend" \
        DUCKDB_SUBINTERP_SUITE_REPORT="$out/$suite-$backend.json" timeout 1800 "$python" -m pytest -q \
        -p no:cacheprovider -p redirect -o timeout=120 "$@" >"$out/$suite-$backend.log" 2>&1) || true
    echo "$(grep '^UDF tests' "$out/$suite-$backend.log" | cut -d: -f2-) (all tests: $(tail -1 "$out/$suite-$backend.log"))"
}
for backend in $backends; do
    run udf "$backend" "$work/udf" .
    # shellcheck disable=SC2086  # one argument per file
    run others "$backend" "$work" $others
done
for suite in udf others; do
    if [ -e "$out/$suite-duckdb.json" ]; then
        echo "== $suite: against DuckDB's own"
        reports=()
        for backend in $backends; do
            [ "$backend" = duckdb ] || reports+=("$out/$suite-$backend.json")
        done
        [ "${#reports[@]}" -eq 0 ] || "$python" "$here/compare.py" "$out/$suite-duckdb.json" "${reports[@]}" || true
    fi
done
