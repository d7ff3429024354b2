#!/usr/bin/env bash
# Builds the Debian package target/debian/rturn_VERSION-1_ARCH.deb with cargo-deb (installed
# with `cargo install cargo-deb --locked` when missing). What goes in is listed in Cargo.toml,
# [package.metadata.deb]:
#   /usr/bin/rturn                       the release binary, stripped by cargo-deb (--strip):
#                                        the release profile keeps its line tables, this copy not
#   /usr/lib/systemd/system/rturn.service   systemd/rturn.service (User=rturn)
#   /usr/lib/sysusers.d/rturn.conf       systemd/rturn.sysusers: the user and group rturn
#   /etc/rturn/turnserver.toml           a conffile, root:rturn 0640 after the postinst:
#                                        conf/turnserver.toml listening on 0.0.0.0:3478 and with
#                                        no relay-ip, so rturn refuses to start with it until the
#                                        operator has replaced the "change-me" secrets
#   /usr/share/doc/rturn/README.md
# The maintainer scripts are debian/postinst and debian/postrm; the package never enables or
# starts the service. scripts/check-package.sh installs the result into a scratch root.
#
# Usage: scripts/package.sh [extra cargo-deb arguments, e.g. --no-build or --maintainer M]
# Reuses the release build when it is up to date (${CARGO_TARGET_DIR:-target}/release/rturn).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "scripts/package.sh: installing cargo-deb (cargo install cargo-deb --locked)" >&2
    cargo install cargo-deb --locked --version '^3.8'
fi

# The packaged config: conf/turnserver.toml, every option and comment kept, with its two
# loopback listeners on every address and its relay-ip commented out. Each line must be
# there exactly once, so a change to conf/ that this would miss fails here.
conf=target/package/turnserver.toml
mkdir -p "$(dirname "$conf")"
cp conf/turnserver.toml "$conf.tmp"
swap() { # FROM TO: the line FROM, found exactly once, becomes TO
    local n
    n=$(grep -cxF -- "$1" "$conf.tmp" || true)
    if [ "$n" != 1 ]; then
        echo "scripts/package.sh: conf/turnserver.toml has the line '$1' $n times, not once" >&2
        exit 1
    fi
    FROM=$1 TO=$2 awk '$0 == ENVIRON["FROM"] { print ENVIRON["TO"]; next } { print }' \
        "$conf.tmp" >"$conf.swap"
    mv "$conf.swap" "$conf.tmp"
}
swap 'udp = ["127.0.0.1:3478"]' 'udp = ["0.0.0.0:3478"]'
swap 'tcp = ["127.0.0.1:3478"]' 'tcp = ["0.0.0.0:3478"]'
swap 'relay-ip = "127.0.0.1"' '# relay-ip = "192.0.2.10"'
mv "$conf.tmp" "$conf"

# --strip: the profile's line tables (57 MB of the 63 MB binary) stay out of the package.
cargo deb --locked --strip --output target/debian/ "$@"
