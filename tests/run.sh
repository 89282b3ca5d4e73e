#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests, the decoder and
# rule corpus tests, and the end-to-end tests that start the real binaries.
# It installs what the tests need when it is missing (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
    if need apt-get; then
        echo "installing $* (Debian packages) ..."
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "missing: $* (and no apt-get to install it)" >&2
        exit 1
    fi
}
# Prometheus and promtool, for the dashboard and alerting-rule tests.
need prometheus && need promtool || apt_install prometheus
# The Debian package starts a system Prometheus; the tests run their own.
if need systemctl; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
# The syslog end-to-end tests send with util-linux `logger` and forward with rsyslogd (TLS: gtls).
need logger || apt_install bsdutils
need rsyslogd || apt_install rsyslog rsyslog-gnutls
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || [ -n "$(find /usr/lib -name lmnsd_gtls.so 2>/dev/null | head -1)" ] || apt_install rsyslog-gnutls
# The packaging test: dpkg-deb, dpkg-shlibdeps and strip to build the .debs
# (deploy/debian/build.sh), useradd and deb-systemd-helper for the maintainer
# scripts, systemd-analyze for the units.
need dpkg-shlibdeps || apt_install dpkg-dev
need strip || apt_install binutils
need useradd || apt_install passwd
need deb-systemd-helper || apt_install init-system-helpers
need systemd-analyze || apt_install systemd
# The rotation and agent crash tests run the real logrotate.
need logrotate || [ -x /usr/sbin/logrotate ] || apt_install logrotate
if [ ! -d ../shared/corpus ]; then
    echo "warning: ../shared/corpus is missing; the corpus tests will fail" >&2
fi

# The build and the tests' temporary files take several GiB; say so up front
# rather than let the compiler die half-way with "No space left on device".
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kib:-0}" -lt $((4 * 1024 * 1024)) ]; then
    echo "warning: only $((free_kib / 1024)) MiB free here; the build and tests need about 4 GiB" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
# The build, bench and packaging scripts that no test runs whole (deploy/pgo.sh
# builds twice, the benches take minutes): at least they must parse.
echo "== bash -n (every shell script parses)"
find . -name '*.sh' -not -path './target/*' -not -path './.git/*' -print0 | sort -z |
    xargs -0 -n 1 bash -n
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo doc (broken links in the code's documentation fail the run)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --quiet
echo "== cargo build (binaries for the end-to-end tests)"
cargo build --workspace --bins --quiet
echo "== cargo test"
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
# Print one closing line that sums every test binary's results.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' target/test-output.txt
