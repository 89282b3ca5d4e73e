#!/usr/bin/env bash
# soc next to fail2ban and CrowdSec, in the same run on this machine, on the
# peer-benchmark corpus (../shared/bench, see its README).
#
#   bash rules/benches/compare.sh                      # 1,000,000 lines, 3 runs each
#   LINES=200000 RUNS=1 bash rules/benches/compare.sh  # quicker
#   CS_RUNS=1 bash rules/benches/compare.sh            # CrowdSec takes ~5 min per run at 1M lines
#   SKIP_CROWDSEC=1 / SKIP_FAIL2BAN=1                  # leave a peer out
#   PGO=1 bash rules/benches/compare.sh                # soc built by deploy/pgo.sh
#   SOCCTL=PATH bash rules/benches/compare.sh          # this socctl, not built here
#
# Needs fail2ban and crowdsec installed as the bench README says (apt, with
# the online_api_credentials trick for crowdsec). Copies the bench folder to a
# temporary folder (../shared is read-only), generates the corpus there with
# gen_corpus.py (same arguments => same bytes as the peers' reference run),
# builds `socctl` in release mode (with PGO=1, profile-guided: see
# deploy/pgo.sh) and times, one at a time (2 cores: never concurrently):
#   * soc:      socctl rules test --replay CORPUS --json (shipped rules)
#   * fail2ban: fail2ban-regex -o row CORPUS sshd, as the bench's
#               run_fail2ban.sh times it (that script then runs once more,
#               untimed here, for its report and detections)
#   * crowdsec: the bench's run_crowdsec.sh (crowdsec -dsn replay)
# with the bench's own `measure` helper (wall time, peak RSS). soc's alerts
# of `ssh-brute-force-by-source` and `net-port-scan` are scored against the
# generator's truth.json with the bench's score.py, like the peers'.
#
# This machine's speed drifts by a third over minutes, so the runs are
# interleaved: soc, fail2ban, soc, fail2ban, ..., soc, CrowdSec, soc, ...;
# every peer run has a soc run just before and just after it. Prints one
# table: median lines/s, peak RSS, detections vs truth, soc's median
# throughput as a multiple of each peer's, and the median over the peer's
# runs of soc's throughput next to that run (the mean of the soc runs
# before and after it) divided by the run's own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shared="${SHARED:-$root/../shared}"
lines="${LINES:-1000000}"
runs="${RUNS:-3}"
cs_runs="${CS_RUNS:-$runs}"
work="$(mktemp -d "${TMPDIR:-/tmp}/soc-compare.XXXXXX")"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT

if [ -n "${SOCCTL:-}" ]; then
    # Absolute: the timed runs start in the bench's folder.
    socctl="$(realpath "$SOCCTL")"
    [ -x "$socctl" ] || { echo "compare.sh: SOCCTL=$SOCCTL is not an executable" >&2; exit 1; }
elif [ -n "${PGO:-}" ]; then
    socctl="$(bash "$root/deploy/pgo.sh")"
else
    (cd "$root" && cargo build --release -q -p soc-collector --bin socctl)
    socctl="${CARGO_TARGET_DIR:-$root/target}/release/socctl"
fi
echo "compare.sh: soc is $socctl" >&2

cp -r "$shared/bench" "$work/bench"
chmod -R u+w "$work/bench"
bench="$work/bench"
rm -f "$bench/results/results.tsv" "$bench/results/detections.txt"
python3 "$bench/gen_corpus.py" --lines "$lines" --out "$bench/data/corpus.log" \
    --truth "$bench/data/truth.json" >&2
cat "$bench/data/corpus.log" >/dev/null # warm the page cache, as the peers' baseline does

# Timed runs, interleaved (see above), with the bench's own helper.
(
    RUNS="$runs"
    # shellcheck source=/dev/null
    source "$bench/lib.sh"
    n=0
    soc() {
        n=$((n + 1))
        OUT=work/soc.json measure soc_replay "$n" "socctl rules test --replay --json (shipped rules)" -- \
            "$socctl" rules test --replay "$CORPUS" --json
    }
    soc
    for i in $(seq "$runs"); do
        # The command run_fail2ban.sh times; its output is what that script
        # reads for the detections (work/fail2ban_regex.out).
        [ -n "${SKIP_FAIL2BAN:-}" ] ||
            measure fail2ban_regex "$i" "fail2ban-regex -o row sshd" -- fail2ban-regex -o row "$CORPUS" sshd
        soc
    done
    if [ -z "${SKIP_CROWDSEC:-}" ]; then
        for i in $(seq "$cs_runs"); do
            RUNS=1 bash "$bench/run_crowdsec.sh"
            soc
        done
    fi
    # Last, untimed in the table: fail2ban's report-mode run and the
    # detections of its rows above (RUNS=0: no timed run of its own).
    [ -n "${SKIP_FAIL2BAN:-}" ] || RUNS=0 bash "$bench/run_fail2ban.sh"
    cat work/soc_replay.err >&2
    python3 - work/soc.json work/soc_bf.txt work/soc_scan.txt <<'PY'
import json, sys
rules = {"ssh-brute-force-by-source": sys.argv[2], "net-port-scan": sys.argv[3]}
ips = {r: set() for r in rules}
for line in open(sys.argv[1]):
    a = json.loads(line)
    if a["rule_id"] in ips:
        ips[a["rule_id"]].add(a["group_key"].split("=", 1)[1])
for r, path in rules.items():
    open(path, "w").write("".join(ip + "\n" for ip in sorted(ips[r])))
PY
    python3 score.py "$TRUTH" work/soc_bf.txt | sed 's/^/soc ssh-brute-force-by-source detections: /' | tee -a results/detections.txt
    python3 score.py "$TRUTH" work/soc_scan.txt | sed 's/^/soc net-port-scan detections: /' | tee -a results/detections.txt
) >&2

python3 - "$bench/results/results.tsv" "$bench/results/detections.txt" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
det = open(sys.argv[2]).read().splitlines()
def detections(prefixes):
    out = []
    for p in prefixes:
        for l in det:
            d = l.split("detections: ", 1)[-1]
            if l.startswith(p) and "detections: " in l and d not in out:
                out.append(d)
    return "; ".join(out)
def lps(r):
    return float(r["lines_per_s"])
def beside(at):
    """soc's lines/s next to the peer run rows[at]: the mean of the soc
    runs just before and just after it (or the one there is)."""
    near = []
    for step in (-1, 1):
        i = at + step
        while 0 <= i < len(rows) and rows[i]["peer"] != "soc_replay":
            i += step
        if 0 <= i < len(rows):
            near.append(lps(rows[i]))
    return statistics.mean(near) if near else None
tools = [
    ("soc", "soc_replay", ["soc ssh-brute-force-by-source", "soc net-port-scan"]),
    ("fail2ban", "fail2ban_regex", ["fail2ban (maxretry=5 findtime=60s)"]),
    ("crowdsec", "crowdsec_pr1", ["crowdsec_pr1 ssh scenarios", "crowdsec_pr1 iptables scan"]),
]
soc_med = None
table = []
for name, peer, prefixes in tools:
    at = [i for i, r in enumerate(rows) if r["peer"] == peer]
    if not at:
        continue
    med = statistics.median(lps(rows[i]) for i in at)
    rss = max(float(rows[i]["max_rss_kb"]) for i in at) / 1024
    ratio = paired = ""
    if name == "soc":
        soc_med = med
    else:
        if soc_med:
            ratio = "%.1f×" % (soc_med / med)
        pairs = [b / lps(rows[i]) for i in at if (b := beside(i)) and lps(rows[i]) > 0]
        if pairs:
            paired = "%.1f× (%s)" % (
                statistics.median(pairs), ", ".join("%.1f" % p for p in pairs))
    table.append((name, len(at), int(rows[at[0]]["lines"]), med, rss, detections(prefixes), ratio, paired))
print()
print("| tool | runs | lines | median lines/s | peak RSS MiB | detections vs truth (bf, near-miss FP, slow, scan, other FP) | soc median ÷ tool median | soc beside each run ÷ that run: median (each) |")
print("|---|---|---|---|---|---|---|---|")
for name, n, lines, med, rss, d, ratio, paired in table:
    print("| %s | %d | %d | %.0f | %.1f | %s | %s | %s |" % (name, n, lines, med, rss, d, ratio, paired))
print()
print("Per-run rows, in the order they ran: " + sys.argv[1] + " (kept with KEEP=1)")
PY
