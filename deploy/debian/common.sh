# Shared by the maintainer scripts of soc-collector and soc-agent; build.sh
# pastes it into each script in place of the line "#COMMON#", so the
# installed scripts depend on no file of the package.
#
# Every path is prefixed with $DPKG_ROOT, and the tools used take it as an
# option (useradd --prefix, deb-systemd-helper reads DPKG_ROOT), so the same
# script installs into the running system and into a throw-away root
# (dpkg --root=DIR --force-script-chrootless, which the tests use).
ROOT="${DPKG_ROOT:-}"

# ensure_user: the system user and group "soc" the services run as. No home,
# no shell, no password. Kept on purge (files it owned may remain).
ensure_user() {
    if ! grep -q '^soc:' "$ROOT/etc/group"; then
        groupadd --system ${ROOT:+--prefix "$ROOT"} soc
    fi
    if ! grep -q '^soc:' "$ROOT/etc/passwd"; then
        useradd --system --gid soc --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin --comment "soc services" \
            ${ROOT:+--prefix "$ROOT"} soc
    fi
}

# own OWNER:GROUP MODE PATH: sets owner and mode (numeric ids read from the
# root's own files), unless the administrator set a dpkg-statoverride.
own() {
    if dpkg-statoverride ${ROOT:+--root "$ROOT"} --list "$3" >/dev/null 2>&1; then
        return 0
    fi
    [ -e "$ROOT$3" ] || return 0
    u="$(awk -F: -v n="${1%%:*}" '$1 == n { print $3 }' "$ROOT/etc/passwd")"
    g="$(awk -F: -v n="${1##*:}" '$1 == n { print $3 }' "$ROOT/etc/group")"
    chown "$u:$g" "$ROOT$3"
    chmod "$2" "$ROOT$3"
}

# The usual debhelper steps for a unit, written out: enable it on a new
# install, keep the administrator's "disable" across upgrades.
enable_unit() {
    deb-systemd-helper unmask "$1" >/dev/null || true
    if deb-systemd-helper --quiet was-enabled "$1"; then
        deb-systemd-helper enable "$1" >/dev/null || true
    else
        deb-systemd-helper update-state "$1" >/dev/null || true
    fi
}

# True when a running systemd is the init of this system (not of a chroot
# or a throw-away root).
systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }
