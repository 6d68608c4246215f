#!/usr/bin/env bash
# Runs every test against a build directory and ends with one line "N passed, N failed".
#   unit: each cmocka binary under BUILD/tests/ (one per tests/unit/<folder>/test_*.c)
#   e2e:  node's test runner over tests/e2e/*.test.mjs (real binary, real MCP SDK client)
#   fuzz: every libFuzzer driver built with clang and run briefly over its corpus (FUZZ_SECONDS,
#         default 2; longer runs: make fuzz); only for the default build, not build/asan
# TOOLGATE_TESTS="unit e2e" (say) limits the run to some kinds.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
export TOOLGATE_BIN="$PWD/$BUILD/toolgate" EHR_BACKEND_BIN="$PWD/$BUILD/ehr-backend"
kinds=${TOOLGATE_TESTS:-unit e2e fuzz}
[[ $BUILD == build ]] || kinds=${kinds/fuzz/}
passed=0
failed=0
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT

if [[ " $kinds " == *" unit "* ]]; then
    for t in $(find "$BUILD"/tests -type f -name 'test_*' -perm -u+x | sort); do
        name=${t#"$BUILD"/tests/}
        log="$logdir/${name//\//_}.log"
        timeout 300 "$t" >"$log" 2>&1
        rc=$?
        p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
        f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
        p=${p:-0}
        f=${f:-0}
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # crashed, sanitizer report, timeout
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$f" -ne 0 ]; then
            echo "FAIL $name (exit $rc)"
            cat "$log"
        else
            echo "ok   $name ($p tests)"
        fi
    done
fi

if [[ " $kinds " == *" e2e "* ]] && compgen -G "tests/e2e/*.test.mjs" >/dev/null; then
    if [ ! -d tests/e2e/node_modules ]; then
        echo "FAIL e2e: tests/e2e/node_modules is missing (run scripts/install-deps.sh)"
        failed=$((failed + 1))
    else
        tap="$logdir/e2e.tap"
        (cd tests/e2e && timeout 1800 node --test --test-concurrency=1 --test-timeout=120000 \
            --test-reporter=spec --test-reporter-destination=stdout \
            --test-reporter=tap --test-reporter-destination="$tap" ./*.test.mjs)
        rc=$?
        p=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$tap" | tail -n1)
        f=$(sed -n 's/^# fail \([0-9]*\)/\1/p' "$tap" | tail -n1)
        p=${p:-0}
        f=${f:-0}
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        passed=$((passed + p))
        failed=$((failed + f))
    fi
fi

if [[ " $kinds " == *" fuzz "* ]] && compgen -G "tests/fuzz/fuzz_*.c" >/dev/null; then
    log="$logdir/fuzz.log"
    FUZZ_SECONDS=${FUZZ_SECONDS:-2} timeout 900 scripts/fuzz.sh >"$log" 2>&1
    rc=$?
    p=$(grep -c '^fuzz.sh: fuzz_.* ok$' "$log")
    f=$(grep -c '^fuzz.sh: fuzz_.* FAILED' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        echo "FAIL fuzz (exit $rc)"
        tail -n 60 "$log"
    else
        echo "ok   fuzz ($p drivers, ${FUZZ_SECONDS:-2} s each)"
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
