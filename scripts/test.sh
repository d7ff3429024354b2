#!/usr/bin/env bash
# Runs rturn's whole test suite. Installs what the tests need when it is missing:
#   coturn           - for turnutils_stunclient / turnutils_uclient, clients we did not write.
#   chromium         - Debian's browser, for tests/browser/ (WebRTC through TURN).
#   npm (and nodejs) - runs tests/browser/*.mjs.
#   playwright-core  - drives that browser; npm ci into tests/browser/node_modules.
#   redis-server     - the cluster tests start their own, each on a free loopback port.
#   python3          - scripts/check-layout.py (file sizes, import cycles, test binaries).
#   systemd          - systemd-analyze (and systemd-sysusers) for scripts/check-package.sh;
#   binutils           strip and readelf, for the same (cargo-deb comes from crates.io).
#   clang, llvm,     - scripts/build-bpf.sh --check: the committed eBPF object (bpf/relay.bpf.o)
#   libbpf-dev         must be what bpf/relay.bpf.c builds to.
#   iproute2         - ip and tc: the kernel offload's test between network namespaces.
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v turnutils_stunclient >/dev/null 2>&1 || need_packages+=(coturn)
[ -x /usr/bin/chromium ] || need_packages+=(chromium)
command -v redis-server >/dev/null 2>&1 || need_packages+=(redis-server)
command -v python3 >/dev/null 2>&1 || need_packages+=(python3)
command -v systemd-analyze >/dev/null 2>&1 || need_packages+=(systemd)
command -v readelf >/dev/null 2>&1 || need_packages+=(binutils)
command -v npm >/dev/null 2>&1 || need_packages+=(npm)
command -v clang >/dev/null 2>&1 || need_packages+=(clang)
command -v llvm-strip >/dev/null 2>&1 || need_packages+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need_packages+=(libbpf-dev)
command -v ip >/dev/null 2>&1 || need_packages+=(iproute2)

if ((${#need_packages[@]})); then
    echo "scripts/test.sh: installing ${need_packages[*]} (Debian packages the tests use)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
    # The coturn package may start its own turnserver on 3478, and redis-server its own redis on
    # 6379; the tests only need coturn's clients and start every redis they use themselves.
    for service in coturn redis-server; do
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
            $sudo systemctl stop "$service" || true
        fi
    done
fi

if [ ! -d tests/browser/node_modules ]; then
    echo "scripts/test.sh: installing tests/browser's npm packages (playwright-core, no browser download)"
    npm ci --prefix tests/browser --no-audit --no-fund
fi

scripts/check-layout.py
scripts/build-bpf.sh --check
cargo test --locked --all-targets "$@"
# The TURN and browser tests once more without the kernel fast path ([relay] offload, on by
# default as root): both data paths must pass them.
RTURN_TEST_OFFLOAD=off cargo test --locked --test turn --test browser "$@"
cargo test --locked --doc
scripts/bench.sh --smoke
# The Debian package, from the release build bench.sh just made, installed into a scratch root.
scripts/check-package.sh
