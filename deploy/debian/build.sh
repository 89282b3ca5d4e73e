#!/usr/bin/env bash
# Builds the Debian packages soc-collector (soc-collector, socctl, rules,
# decoders, dashboards) and soc-agent from this checkout:
#
#   deploy/debian/build.sh                      # release build -> target/debian/*.deb
#   deploy/debian/build.sh --profile debug      # debug build (what the tests use)
#   deploy/debian/build.sh --revision 2         # package version <crate version>-2
#   deploy/debian/build.sh --out DIR --no-build # package binaries already built
#   deploy/debian/build.sh --pgo                # socctl profile-guided (deploy/pgo.sh)
#
# It writes the packages with dpkg-deb from a staged tree: no tool beyond
# Debian's own dpkg-dev and binutils (and llvm-profdata with --pgo), nothing
# fetched from the network. The file list, modes, conffiles, maintainer
# scripts and dependencies are all here and in deploy/debian/<package>/, so
# a reader can see what a package holds without knowing a packaging tool.
# Prints the path of each package.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
profile=release
revision=1
out="$root/target/debian"
build=1
compress=xz
pgo=0

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --revision) revision="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --pgo) pgo=1; shift ;;
        # gzip is several times faster than xz on the debug binaries the tests package.
        --compress) compress="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "build.sh: unknown argument $1" >&2; usage 2 >&2 ;;
    esac
done
case "$profile" in
    release) bindir="$root/target/release"; cargo_profile=(--release) ;;
    debug) bindir="$root/target/debug"; cargo_profile=() ;;
    *) echo "build.sh: --profile is release or debug, not $profile" >&2; exit 2 ;;
esac
case "$revision" in
    ''|*[!0-9A-Za-z.+~]*) echo "build.sh: --revision $revision is not a Debian revision" >&2; exit 2 ;;
esac
for tool in dpkg-deb dpkg-shlibdeps strip; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build.sh: $tool is missing; install it with: apt-get install dpkg-dev binutils" >&2
        exit 1
    fi
done

if [ "$build" = 1 ]; then
    echo "build.sh: cargo build --bins ${cargo_profile[*]:-} (soc-collector, socctl, soc-agent)" >&2
    (cd "$root" && cargo build --quiet "${cargo_profile[@]}" -p soc-collector -p soc-agent --bins)
fi
for b in soc-collector socctl soc-agent; do
    [ -x "$bindir/$b" ] || { echo "build.sh: $bindir/$b is missing (build it, or drop --no-build)" >&2; exit 1; }
done
socctl_bin="$bindir/socctl"
if [ "$pgo" = 1 ]; then
    [ "$profile" = release ] || { echo "build.sh: --pgo needs the release profile" >&2; exit 2; }
    socctl_bin="$root/target/pgo/release/socctl"
    if [ "$build" = 1 ]; then
        socctl_bin="$(bash "$root/deploy/pgo.sh")"
    fi
    [ -x "$socctl_bin" ] || { echo "build.sh: $socctl_bin is missing (run deploy/pgo.sh, or drop --no-build)" >&2; exit 1; }
fi

# The version is the one the binaries report, so package and binary agree.
version="$("$bindir/soc-agent" --version | awk '{print $2}')"
cversion="$("$bindir/soc-collector" --version | awk '{print $2}')"
if [ "$version" != "$cversion" ]; then
    echo "build.sh: soc-agent is $version but soc-collector is $cversion" >&2
    exit 1
fi
arch="$(dpkg --print-architecture)"
debversion="$version-$revision"
stage="$out/stage"
rm -rf "$stage"
mkdir -p "$stage" "$out"

# inst MODE SRC DEST: copies one file into the staged tree with its mode.
inst() { install -D -m "$1" "$2" "$3"; }

# Shared-library dependencies of the binaries, as dpkg-shlibdeps sees them.
shlibs() {
    local tmp
    tmp="$(mktemp -d)"
    mkdir -p "$tmp/debian"
    printf 'Source: soc\n\nPackage: soc\nArchitecture: any\n' >"$tmp/debian/control"
    (cd "$tmp" && dpkg-shlibdeps -O -e "$@" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
    rm -rf "$tmp"
}

# stage_common PKG: the parts both packages have: /etc/soc, docs, control files.
stage_common() {
    local pkg="$1" dir="$stage/$1"
    install -d -m 0755 "$dir/DEBIAN" "$dir/etc/soc" "$dir/usr/bin" "$dir/lib/systemd/system"
    inst 0644 "$root/deploy/systemd/$pkg.service" "$dir/lib/systemd/system/$pkg.service"
    inst 0644 "$root/docs/operator-guide.md" "$dir/usr/share/doc/$pkg/operator-guide.md"
    inst 0644 "$root/deploy/debian/copyright" "$dir/usr/share/doc/$pkg/copyright"
    # Maintainer scripts, with the shared functions pasted in place of #COMMON#.
    for s in postinst prerm postrm; do
        sed -e "/^#COMMON#\$/{r $root/deploy/debian/common.sh" -e 'd}' \
            "$root/deploy/debian/$pkg/$s" >"$dir/DEBIAN/$s"
        chmod 0755 "$dir/DEBIAN/$s"
    done
}

# finish PKG DEPENDS DESCRIPTION: control, conffiles, md5sums, then the .deb.
finish() {
    local pkg="$1" depends="$2" description="$3" dir="$stage/$1"
    # Every file under /etc is a conffile: dpkg never overwrites a changed one.
    (cd "$dir" && find etc -type f | sort | sed 's|^|/|') >"$dir/DEBIAN/conffiles"
    (cd "$dir" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
        xargs md5sum) >"$dir/DEBIAN/md5sums"
    chmod 0644 "$dir/DEBIAN/conffiles" "$dir/DEBIAN/md5sums"
    local size
    size="$(du -sk --exclude=DEBIAN "$dir" | cut -f1)"
    cat >"$dir/DEBIAN/control" <<EOF
Package: $pkg
Version: $debversion
Architecture: $arch
Maintainer: soc maintainers <soc@example.invalid>
Installed-Size: $size
Depends: $depends
Section: admin
Priority: optional
Homepage: https://example.invalid/soc
Description: $description
EOF
    local deb="$out/${pkg}_${debversion}_${arch}.deb"
    dpkg-deb --root-owner-group -Z"$compress" --build "$dir" "$deb" >/dev/null
    echo "$deb"
}

# Stripped of debug information (Debian ships it separately, if at all);
# the symbol table stays for readable backtraces.
strip_into() { strip --strip-debug -o "$2" "$1"; chmod 0755 "$2"; }

# ---- soc-collector --------------------------------------------------------
c="$stage/soc-collector"
stage_common soc-collector
strip_into "$bindir/soc-collector" "$c/usr/bin/soc-collector"
strip_into "$socctl_bin" "$c/usr/bin/socctl"
inst 0644 "$root/deploy/collector.toml" "$c/etc/soc/collector.toml"
install -d -m 0750 "$c/var/lib/soc"
# copy_tree SRC DEST FIND-ARGS...: the files below SRC that FIND-ARGS select,
# with their sub-folders, mode 0644. A missing SRC is skipped.
copy_tree() {
    local src="$1" dest="$2"
    shift 2
    [ -d "$src" ] || return 0
    (cd "$src" && find . -type f \( "$@" \) | sort) | while read -r f; do
        inst 0644 "$src/$f" "$dest/${f#./}"
    done
}
copy_tree "$root/rules/rules" "$c/usr/share/soc/rules" -name '*.yml' -o -name '*.yaml'
copy_tree "$root/rules/decoders" "$c/usr/share/soc/decoders" -name '*.yml' -o -name '*.yaml'
copy_tree "$root/rules/lists" "$c/usr/share/soc/lists" -name '*.txt'
copy_tree "$root/dashboards" "$c/usr/share/soc/dashboards" -maxdepth 1 -name '*.json'
copy_tree "$root/dashboards/provisioning" "$c/usr/share/soc/grafana-provisioning" -name '*.yml'
copy_tree "$root/deploy/prometheus" "$c/usr/share/soc/prometheus" -name '*.yml' ! -name '*.test.yml'
finish soc-collector \
    "$(shlibs "$c/usr/bin/soc-collector" "$c/usr/bin/socctl"), passwd, init-system-helpers (>= 1.54~)" \
    "soc collector, socctl, detection rules and dashboards
 soc-collector receives log lines from soc-agent over HTTPS, journals them
 durably, decodes them, runs the detection rules and stores alerts; socctl
 is the responders' command line. The package holds the systemd service
 (hardened, runs as user soc), the configuration /etc/soc/collector.toml,
 the shipped rules and decoders, Grafana dashboards and Prometheus rules in
 /usr/share/soc. State lives in /var/lib/soc and is removed only on purge."

# ---- soc-agent ------------------------------------------------------------
a="$stage/soc-agent"
stage_common soc-agent
strip_into "$bindir/soc-agent" "$a/usr/bin/soc-agent"
inst 0644 "$root/deploy/agent.toml" "$a/etc/soc/agent.toml"
install -d -m 0750 "$a/var/lib/soc-agent"
finish soc-agent \
    "$(shlibs "$a/usr/bin/soc-agent"), passwd, init-system-helpers (>= 1.54~)" \
    "soc agent: ships firewall and antivirus logs to soc-collector
 soc-agent tails log files, follows rotations and ships every line to
 soc-collector over HTTPS, moving its checkpoint only once the collector
 has the lines on disk. The systemd service runs as user soc with group adm
 (read access to /var/log, no root). Configuration /etc/soc/agent.toml;
 state (checkpoints, the agent's key) in /var/lib/soc-agent, removed only
 on purge."
