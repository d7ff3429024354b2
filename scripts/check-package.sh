#!/usr/bin/env bash
# Builds the Debian package (scripts/package.sh, reusing the release build) and checks it:
#   - the files, their modes, the conffile flag (dpkg-deb -I ... conffiles), /usr/bin/rturn
#     stripped and at most 15 MB;
#   - installed with dpkg into a scratch root, maintainer scripts and all: the postinst creates
#     the user rturn there, makes the conffile root:rturn 0640 and neither enables nor starts
#     the service; `systemd-analyze verify` of the installed unit;
#   - the installed binary, run as the installed user rturn with --check-config on the
#     installed conffile, refuses the "change-me" placeholder (and user nobody cannot read
#     the file at all); edited as the README says, the same file is accepted;
#   - reinstalling (an upgrade) keeps the operator's edits, owner and mode; remove, then
#     purge, take everything away but the user;
#   - the README's "Install by hand, from source" block, run as written in a second scratch
#     root with the same release build, gives the same user, config owner and mode, and unit.
#
# A scratch root is a directory under /tmp with this machine's /usr mounted below its own
# (an overlay: dpkg's writes land in the root; no debootstrap, nothing downloaded), its own
# /etc (a passwd and group with root and nobody) and its own dpkg database (knowing only the
# packages that satisfy rturn's Depends here); dpkg runs chrooted into it, maintainer scripts
# and all. The mounts live in a private mount namespace (unshare) that ends before the
# directory is removed. This machine's /etc, dpkg database and systemd are never touched and
# no service is started. Needs root (or sudo) for the namespace, the mounts and chroot.
#
# Usage: scripts/check-package.sh [extra scripts/package.sh arguments, e.g. --no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

max_binary_bytes=$((15 * 1024 * 1024))
conf=/etc/rturn/turnserver.toml
unit=/usr/lib/systemd/system/rturn.service

fail() {
    echo "check-package: FAIL: $*" >&2
    exit 1
}
ok() { echo "check-package: ok: $*"; }

# scratch_root DIR: a root to chroot into. dpkg unpacks into its /usr, and the maintainer
# scripts run programs from it (sh, systemd-sysusers, dpkg-statoverride, deb-systemd-helper):
# an overlay, this machine's /usr below, the root's own writes above, so this machine's /usr
# is never written. Its /etc has root and nobody, PAM's configuration (for runuser) and an
# empty /etc/systemd/system.
scratch_root() {
    local root=$1 link
    chmod 0755 "$root"
    mkdir -p "$root"/{usr,etc/systemd/system,dev,tmp,run,var/lib/dpkg/info,var/lib/dpkg/updates}
    chmod 1777 "$root/tmp"
    for link in bin sbin lib lib64; do
        if [ -L "/$link" ]; then ln -s "$(readlink "/$link")" "$root/$link"; fi
    done
    mkdir -p "$root/.usr-upper" "$root/.usr-work"
    mount -t overlay overlay -o "lowerdir=/usr,upperdir=$root/.usr-upper,workdir=$root/.usr-work" "$root/usr"
    touch "$root/dev/null"
    mount --bind /dev/null "$root/dev/null"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    printf 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
    printf 'root:*::\nnogroup:*::\n' >"$root/etc/gshadow"
    chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"
    printf 'passwd: files\ngroup: files\nshadow: files\ngshadow: files\n' >"$root/etc/nsswitch.conf"
    cp -a /etc/pam.d /etc/login.defs "$root/etc/"
    if [ -d /etc/security ]; then cp -a /etc/security "$root/etc/"; fi
    : >"$root/var/lib/dpkg/status"
    touch "$root/var/lib/dpkg/available"
}

# ---- inside the private mount namespace, by hand: the README's "Install by hand" ----
if [ "${1:-}" = --manual-in-namespace ]; then
    root=$2 binary=$3
    scratch_root "$root"
    mkdir -p "$root/src/target/release"
    cp -r systemd conf "$root/src/"
    cp "$binary" "$root/src/target/release/rturn"
    # The README's block, but for `cargo build` (done: the release build is copied in).
    steps=$(awk '/^### Install by hand/ { on = 1 } on && /^```sh$/ { block = 1; next }
        block && /^```$/ { exit } block' README.md | grep -v '^cargo build')
    [ "$(wc -l <<<"$steps")" -ge 6 ] || fail "README.md has no \"Install by hand\" sh block: $steps"
    # No systemd runs here (nor can systemctl tell a chroot from this container, whose PID 1
    # it may not inspect): SYSTEMD_OFFLINE=1 makes `systemctl daemon-reload` a no-op.
    out=$(SYSTEMD_OFFLINE=1 chroot "$root" /bin/sh -ec "cd /src; $steps" 2>&1) ||
        fail "the README's steps: $out"
    uid=$(awk -F: '$1 == "rturn" { print $3 }' "$root/etc/passwd")
    gid=$(awk -F: '$1 == "rturn" { print $3 }' "$root/etc/group")
    [ -n "$uid" ] && [ -n "$gid" ] || fail "the README's steps made no user rturn"
    [ "$(stat -c '%u %g %a' "$root$conf")" = "0 $gid 640" ] || fail "by hand, $conf is not root:rturn 0640"
    size=$(stat -c %s "$root/usr/bin/rturn")
    [ "$size" -le "$max_binary_bytes" ] || fail "by hand, /usr/bin/rturn is $size bytes"
    verify=$(systemd-analyze verify --man=no --root="$root" "$root/etc/systemd/system/rturn.service" 2>&1) ||
        fail "systemd-analyze verify, by hand: $verify"
    [ -z "$verify" ] || fail "systemd-analyze verify, by hand, said: $verify"
    check=$(chroot "$root" runuser -u rturn -- rturn -c "$conf" --check-config 2>&1) ||
        fail "runuser -u rturn -- rturn --check-config: $check"
    ok "the README's steps by hand: $((size / 1024)) KiB binary, user rturn, $conf root:rturn 0640, unit verified; as rturn: $check"
    exit 0
fi

# ---- inside the private mount namespace: install, check, remove, purge ----
if [ "${1:-}" = --in-namespace ]; then
    deb=$2 root=$3
    scratch_root "$root"
    # The database knows only the packages that satisfy rturn's Depends here (their status
    # copied from this machine's), so dpkg checks them like on a real system.
    deps=$(dpkg-deb -f "$deb" Depends)
    IFS=, read -ra groups <<<"$deps"
    for group in "${groups[@]}"; do
        found=""
        IFS='|' read -ra alternatives <<<"$group"
        for alternative in "${alternatives[@]}"; do
            name=$(awk '{ print $1 }' <<<"$alternative")
            if dpkg-query -W -f='${db:Status-Status}' "$name" 2>/dev/null | grep -qx installed; then
                found=$name
                break
            fi
        done
        [ -n "$found" ] || fail "no package here satisfies the dependency '$group'"
        { dpkg-query -s "$found"; echo; } >>"$root/var/lib/dpkg/status"
        touch "$root/var/lib/dpkg/info/$(dpkg-query -W -f='${binary:Package}' "$found").list"
    done
    # dpkg itself runs inside the root too: it resolves the statoverride's user and group
    # there, as on a real system (`dpkg --root` from outside would look them up here).
    cp "$deb" "$root/tmp/rturn.deb"
    dpkg_root() { chroot "$root" dpkg --force-confdef --force-confold "$@"; }

    out=$(dpkg_root -i /tmp/rturn.deb 2>&1) || fail "dpkg -i: $out"
    echo "$out" | sed 's/^/  dpkg -i: /'
    [[ $out == *"rturn: not started. Edit $conf"* ]] || fail "the postinst did not say how to start it"

    # The files, from this root's dpkg database.
    for f in /usr/bin/rturn "$unit" /usr/lib/sysusers.d/rturn.conf "$conf" /usr/share/doc/rturn/copyright; do
        # Written by dpkg, not seen through from this machine's /usr.
        written=$root$f
        [[ $f == /usr/* ]] && written=$root/.usr-upper${f#/usr}
        [ -f "$written" ] || fail "$f not installed"
        grep -qxF "$f" "$root/var/lib/dpkg/info/rturn.list" || fail "$f not in rturn.list"
    done
    ok "installed into a scratch root: /usr/bin/rturn, $unit, /usr/lib/sysusers.d/rturn.conf, $conf"

    # The user, the conffile's owner and mode, the statoverride.
    uid=$(awk -F: '$1 == "rturn" { print $3 }' "$root/etc/passwd")
    gid=$(awk -F: '$1 == "rturn" { print $3 }' "$root/etc/group")
    [ -n "$uid" ] && [ -n "$gid" ] || fail "the postinst created no user/group rturn: $(cat "$root/etc/passwd")"
    [ "$uid" -lt 1000 ] || fail "rturn is not a system user (uid $uid)"
    ok "the postinst created the system user rturn (uid $uid, gid $gid)"
    mode=$(stat -c '%u %g %a' "$root$conf")
    [ "$mode" = "0 $gid 640" ] || fail "$conf is $mode (uid gid mode), not 0 $gid 640"
    ok "$conf is root:rturn 0640 (secrets not world-readable)"
    so=$(chroot "$root" dpkg-statoverride --list "$conf") || fail "no statoverride for $conf"
    [ "$so" = "root rturn 640 $conf" ] || fail "statoverride: $so"

    # The installed unit, as systemd reads it, against the root it is installed in (its
    # /usr/bin/rturn, the user rturn, systemd's own units from the /usr below).
    verify=$(systemd-analyze verify --man=no --root="$root" "$root$unit" 2>&1) ||
        fail "systemd-analyze verify $unit: $verify"
    [ -z "$verify" ] || fail "systemd-analyze verify $unit said: $verify"
    ok "systemd-analyze verify $unit"

    # Not enabled, not started (nothing could have started: no systemd in the root).
    wants=$(find "$root/etc/systemd" -name 'rturn.service' 2>/dev/null || true)
    [ -z "$wants" ] || fail "the unit was enabled: $wants"
    ok "rturn.service neither enabled nor started by the package"

    # The installed binary, as the installed user, on the installed conffile.
    as_rturn() { chroot --userspec="$uid:$gid" --groups="$gid" "$root" /usr/bin/rturn "$@"; }
    size=$(stat -c %s "$root/usr/bin/rturn")
    [ "$size" -le "$max_binary_bytes" ] || fail "/usr/bin/rturn is $size bytes, more than 15 MB"
    # (.debug_gdb_scripts, which rustc puts in every binary, is loaded and stays.)
    sections=$(readelf -S --wide "$root/usr/bin/rturn")
    grep -Eq '\.(debug_(info|line|str|abbrev|ranges)|symtab) ' <<<"$sections" &&
        fail "/usr/bin/rturn is not stripped: $(grep -E 'debug|symtab' <<<"$sections")"
    ok "/usr/bin/rturn is stripped, $((size / 1024)) KiB ($(as_rturn --version))"
    set +e
    err=$(as_rturn -c "$conf" --check-config 2>&1)
    code=$?
    set -e
    [ "$code" = 1 ] || fail "--check-config on the packaged file exited $code: $err"
    [[ $err == *'still the shipped placeholder "change-me"'*'0.0.0.0:3478'* ]] ||
        fail "--check-config on the packaged file did not refuse the placeholder: $err"
    ok "as user rturn, --check-config refuses the packaged file: $err"
    set +e
    err=$(chroot --userspec=65534:65534 --groups=65534 "$root" /usr/bin/rturn -c "$conf" --check-config 2>&1)
    set -e
    [[ $err == *"permission denied"* ]] || fail "user nobody could read $conf: $err"
    ok "user nobody cannot read it"

    # What the operator does (README): real secrets, this machine's address as relay-ip.
    secret=$(head -c 18 /dev/urandom | base64)
    relay_ip=$(ip -4 -o addr show scope global 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4; exit }')
    sed -i "s|\"change-me\"|\"$secret\"|; s|^alice = \"change-me\"|alice = \"$secret\"|" "$root$conf"
    if [ -n "$relay_ip" ]; then
        sed -i "s|^# relay-ip = \"192.0.2.10\"|relay-ip = \"$relay_ip\"|" "$root$conf"
    else
        # No global IPv4 address here: loopback listeners and relay instead.
        sed -i 's|^relay-ip|#|; s|^# relay-ip = "192.0.2.10"|relay-ip = "127.0.0.1"|; s|"0.0.0.0:3478"|"127.0.0.1:3478"|' "$root$conf"
    fi
    grep -q '"change-me"' "$root$conf" && fail "the edit left a placeholder"
    err=$(as_rturn -c "$conf" --check-config 2>&1) || fail "--check-config on the edited file: $err"
    ok "edited (secrets, relay-ip ${relay_ip:-127.0.0.1}), it is accepted: $err"

    # An upgrade (the same version again): the operator's file, owner and mode stay.
    before=$(sha256sum <"$root$conf")
    out=$(dpkg_root -i /tmp/rturn.deb 2>&1) || fail "reinstall: $out"
    [ "$(sha256sum <"$root$conf")" = "$before" ] || fail "reinstalling changed the edited $conf"
    [ "$(stat -c '%u %g %a' "$root$conf")" = "0 $gid 640" ] || fail "reinstalling changed $conf's owner or mode"
    [[ $out != *"not started"* ]] || fail "the upgrade repeated the first-install note"
    ok "reinstalled: the edited conffile, its owner and mode kept"

    # Remove keeps the conffile; purge removes it, the statoverride and /etc/rturn.
    out=$(dpkg_root --remove rturn 2>&1) || fail "remove: $out"
    [ ! -e "$root/usr/bin/rturn" ] || fail "remove left /usr/bin/rturn"
    [ -f "$root$conf" ] || fail "remove took the conffile"
    out=$(dpkg_root --purge rturn 2>&1) || fail "purge: $out"
    [ ! -e "$root/etc/rturn" ] || fail "purge left /etc/rturn: $(ls -la "$root/etc/rturn")"
    [ -z "$(chroot "$root" dpkg-statoverride --list "$conf")" ] || fail "purge left the statoverride"
    left=$(find "$root/etc/systemd" "$root/var/lib/systemd" -name 'rturn*' 2>/dev/null || true)
    [ -z "$left" ] || fail "purge left systemd state: $left"
    ok "remove kept $conf; purge removed it, /etc/rturn, the statoverride and the unit's state"
    exit 0
fi

# ---- the package itself ----
scripts/package.sh "$@"
deb=$(ls -t target/debian/rturn_*.deb | head -1)
echo "check-package: $deb ($(($(stat -c %s "$deb") / 1024)) KiB)"
conffiles=$(dpkg-deb -I "$deb" conffiles)
[ "$conffiles" = "$conf" ] || fail "conffiles is '$conffiles', not $conf"
ok "conffiles: $conffiles"
listing=$(dpkg-deb -c "$deb" | awk '{ print $1, $2, $6 }')
for want in "-rwxr-xr-x 0/0 ./usr/bin/rturn" "-rw-r----- 0/0 .$conf" "-rw-r--r-- 0/0 .$unit" \
    "-rw-r--r-- 0/0 ./usr/lib/sysusers.d/rturn.conf"; do
    grep -qxF -- "$want" <<<"$listing" || fail "the package has no '$want':
$listing"
done
[ "$(grep -c '^-.* \./usr/bin/' <<<"$listing")" = 1 ] || fail "more than one program in /usr/bin: $listing"
ok "files and modes"

command -v systemd-analyze >/dev/null 2>&1 ||
    fail "systemd-analyze missing (scripts/test.sh installs the systemd package)"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
root=$(mktemp -d /tmp/rturn-scratch-root.XXXXXX)
# The mounts under $root die with the namespace, before this removes the directory.
trap '$sudo rm -rf --one-file-system "$root"' EXIT
$sudo unshare --mount --propagation private -- bash "$0" --in-namespace "$(realpath "$deb")" "$root"
# The README's steps for those who build from source, with the same release build.
manual=$(mktemp -d /tmp/rturn-scratch-root.XXXXXX)
trap '$sudo rm -rf --one-file-system "$root" "$manual"' EXIT
$sudo unshare --mount --propagation private -- bash "$0" --manual-in-namespace "$manual" \
    "$(realpath "${CARGO_TARGET_DIR:-target}/release/rturn")"
echo "check-package: all checks passed"
