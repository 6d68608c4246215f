#!/usr/bin/env bash
# Builds the libFuzzer drivers and runs each one briefly.
#
#   scripts/fuzz.sh [-b] [NAME...]
#
#   NAME      run only tests/fuzz/fuzz_NAME.c (default: every tests/fuzz/fuzz_*.c)
#   -b        build only, do not run
#   -h        this text
#
# Each driver is built with clang -fsanitize=fuzzer,address,undefined against every
# src/**/*.c except src/main.c, into build/fuzz/. It then runs for FUZZ_SECONDS (default 20)
# over a copy of tests/fuzz/corpus/NAME/ (the committed corpus is never written), with
# -max_len 65536. Crash inputs land in build/fuzz/artifacts/. Exits non-zero when a build
# fails or any driver finds a crash, leak, timeout or sanitizer report.
#
# Environment: FUZZ_SECONDS, FUZZ_CC (default clang), FUZZ_JOBS (parallel compiles, nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,18s/^# \{0,1\}//p' "$0"; }

build_only=0
names=()
while [ $# -gt 0 ]; do
    case "$1" in
    -h | --help) usage; exit 0 ;;
    -b) build_only=1 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) names+=("$1") ;;
    esac
    shift
done

seconds=${FUZZ_SECONDS:-20}
cc=${FUZZ_CC:-clang}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
out=build/fuzz

if ! command -v "$cc" >/dev/null; then
    echo "fuzz.sh: $cc not found (install clang and libclang-rt-14-dev)" >&2
    exit 2
fi

# The packages are the Makefile's, so the drivers link exactly what the server links.
pkgs=$(sed -n 's/^PKGS *:= *//p' Makefile)
if [ -z "$pkgs" ]; then
    echo "fuzz.sh: no PKGS line found in the Makefile" >&2
    exit 2
fi
pkg_cflags=$(pkg-config --cflags $pkgs)
pkg_libs=$(pkg-config --libs $pkgs)

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cflags="-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -fno-strict-aliasing -Isrc $san \
    -DTOOLGATE_VERSION=\"fuzz\" -DTOOLGATE_REV=\"fuzz\" $pkg_cflags"

if [ ${#names[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        [ -e "$f" ] || continue
        n=$(basename "$f" .c)
        names+=("${n#fuzz_}")
    done
fi
if [ ${#names[@]} -eq 0 ]; then
    echo "fuzz.sh: no drivers under tests/fuzz/" >&2
    exit 2
fi
for n in "${names[@]}"; do
    if [ ! -f "tests/fuzz/fuzz_$n.c" ]; then
        echo "fuzz.sh: tests/fuzz/fuzz_$n.c does not exist" >&2
        exit 2
    fi
done

# Library objects once (instrumented for coverage, without libFuzzer's main), then one link
# per driver.
mkdir -p "$out/obj" "$out/artifacts" "$out/run"
mapfile -t srcs < <(find src -name '*.c' ! -path src/main.c | sort)
echo "fuzz.sh: compiling ${#srcs[@]} sources with $cc"
objs=()
for s in "${srcs[@]}"; do
    objs+=("$out/obj/${s%.c}.o")
done
printf '%s\n' "${srcs[@]}" | xargs -P "$jobs" -I{} sh -c '
    src="$1"; obj="$2/obj/${src%.c}.o"
    mkdir -p "$(dirname "$obj")"
    if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find src -name "*.h" -newer "$obj" | head -n1)" ]; then
        $3 $4 -fsanitize=fuzzer-no-link -c "$src" -o "$obj" || exit 255
    fi' _ {} "$out" "$cc" "$cflags"
# The dashboard's files, generated into C as the Makefile does.
scripts/embed-assets.sh "$out/gen/admin_ui_assets.c" src/admin/ui/*.html src/admin/ui/*.css \
    src/admin/ui/*.js
# shellcheck disable=SC2086
$cc $cflags -fsanitize=fuzzer-no-link -c "$out/gen/admin_ui_assets.c" -o "$out/obj/admin_ui_assets.o"
objs+=("$out/obj/admin_ui_assets.o")

for n in "${names[@]}"; do
    echo "fuzz.sh: linking $out/fuzz_$n"
    # shellcheck disable=SC2086
    "$cc" $cflags -fsanitize=fuzzer "tests/fuzz/fuzz_$n.c" "${objs[@]}" \
        $pkg_libs -lhttp_parser -lpthread -lm -o "$out/fuzz_$n"
done
[ "$build_only" -eq 1 ] && exit 0

failed=()
for n in "${names[@]}"; do
    # Work on a copy: libFuzzer adds every new interesting input to its first corpus dir.
    corpus=$(mktemp -d "$out/run/$n.XXXXXX")
    if [ -d "tests/fuzz/corpus/$n" ]; then
        cp -R "tests/fuzz/corpus/$n/." "$corpus/"
    fi
    echo "fuzz.sh: running fuzz_$n for ${seconds}s"
    rc=0
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
        UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        timeout --signal=KILL $((seconds + 120)) \
        "$out/fuzz_$n" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$n-" "$corpus" >"$out/run/$n.log" 2>&1 || rc=$?
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done)' "$out/run/$n.log" || true
    if [ "$rc" -ne 0 ]; then
        echo "fuzz.sh: fuzz_$n FAILED (exit $rc); log: $out/run/$n.log" >&2
        grep -E 'ERROR|SUMMARY|Test unit written' "$out/run/$n.log" >&2 || true
        failed+=("$n")
    else
        echo "fuzz.sh: fuzz_$n ok"
    fi
    rm -rf "$corpus"
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: all ${#names[@]} drivers ran clean"
