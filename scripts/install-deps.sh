#!/usr/bin/env bash
# The one place that installs what toolgate needs: Debian packages for building, testing and
# benchmarking, and the npm packages of the end-to-end suite (from the committed lockfile).
# Idempotent: it installs only what is missing and is quick when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    build-essential pkg-config clang libclang-rt-14-dev
    libuv1-dev libhttp-parser-dev libcurl4-openssl-dev libssl-dev libjansson-dev libyaml-dev
    libpcre2-dev libvectorscan-dev libsqlite3-dev libzstd-dev libhiredis-dev libpq-dev libcmocka-dev
    libmimalloc-dev libsodium-dev
    redis-server postgresql sqlite3 openssl curl ca-certificates iproute2
    libseccomp-dev bubblewrap
    nodejs npm
    wrk nginx-light h2o valgrind
    chromium
    dpkg-dev lintian man-db
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
# Node.js may come from outside Debian's packages (it does on some images); accept any node >= 18.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    keep=()
    for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || keep+=("$p"); done
    missing=("${keep[@]+"${keep[@]}"}")
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Package post-install scripts may start services we start ourselves on loopback when a
    # test needs them; stop the system-wide ones so ports and data directories stay ours.
    for svc in nginx h2o redis-server postgresql; do
        if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true; fi
        if command -v service >/dev/null 2>&1; then $SUDO service "$svc" stop >/dev/null 2>&1 || true; fi
    done
else
    echo "install-deps: all Debian packages present"
fi

# End-to-end suite: official MCP SDK client and reference servers, pinned by package-lock.json.
if [ -f tests/e2e/package-lock.json ]; then
    stamp=tests/e2e/node_modules/.lock-stamp
    if [ ! -f "$stamp" ] || ! cmp -s tests/e2e/package-lock.json "$stamp"; then
        echo "install-deps: npm ci in tests/e2e"
        (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
        cp tests/e2e/package-lock.json "$stamp"
    else
        echo "install-deps: e2e npm packages present"
    fi
fi
