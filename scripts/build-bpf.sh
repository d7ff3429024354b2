#!/usr/bin/env bash
# Rebuilds the kernel fast path's eBPF object, bpf/relay.bpf.o, from bpf/relay.bpf.c.
# The object is committed so that building rturn needs only Rust (src/offload/ includes it with
# include_bytes!); CI runs `scripts/build-bpf.sh --check`, which rebuilds into a temporary file
# and fails if it differs from the committed one (as bpf2go projects do).
# Needs Debian's clang, llvm (llvm-strip) and libbpf-dev (bpf/bpf_helpers.h).
# Usage: scripts/build-bpf.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."

out=bpf/relay.bpf.o
if [ "${1:-}" = "--check" ]; then
    out=$(mktemp --suffix=.bpf.o)
    trap 'rm -f "$out"' EXIT
fi

# The output depends only on the source and the toolchain: the source is named relative to
# the repository, the debug info (not the BTF the loader needs) is stripped, and the build
# directory is mapped away.
clang -O2 -g -target bpf -Wall -Werror \
    -I"/usr/include/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)" \
    -fdebug-prefix-map="$PWD"=. \
    -c bpf/relay.bpf.c -o "$out"
llvm-strip -g "$out"

if [ "${1:-}" = "--check" ]; then
    if ! cmp -s "$out" bpf/relay.bpf.o; then
        echo "bpf/relay.bpf.o is not what scripts/build-bpf.sh builds from bpf/relay.bpf.c" >&2
        echo "($(clang --version | head -n1)); run scripts/build-bpf.sh and commit the object." >&2
        exit 1
    fi
    echo "bpf/relay.bpf.o matches bpf/relay.bpf.c"
fi
