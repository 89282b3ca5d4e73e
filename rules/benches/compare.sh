#!/usr/bin/env bash
# soc next to fail2ban and CrowdSec, in the same run on this machine, on the
# peer-benchmark corpus (../shared/bench, see its README).
#
#   bash rules/benches/compare.sh                      # 1,000,000 lines, 3 runs each
#   LINES=200000 RUNS=1 bash rules/benches/compare.sh  # quicker
#   CS_RUNS=1 bash rules/benches/compare.sh            # CrowdSec takes ~5 min per run at 1M lines
#   SKIP_CROWDSEC=1 / SKIP_FAIL2BAN=1                  # leave a peer out
#
# Needs fail2ban and crowdsec installed as the bench README says (apt, with
# the online_api_credentials trick for crowdsec). Copies the bench folder to a
# temporary folder (../shared is read-only), generates the corpus there with
# gen_corpus.py (same arguments => same bytes as the peers' reference run),
# builds `socctl` in release mode and times, one after another (2 cores:
# never concurrently):
#   * soc:      socctl rules test --replay CORPUS --json (shipped rules)
#   * fail2ban: the bench's run_fail2ban.sh (fail2ban-regex, sshd filter)
#   * crowdsec: the bench's run_crowdsec.sh (crowdsec -dsn replay)
# with the bench's own `measure` helper (wall time, peak RSS). soc's alerts
# of `ssh-brute-force-by-source` and `net-port-scan` are scored against the
# generator's truth.json with the bench's score.py, like the peers'. Prints
# one table: median lines/s, peak RSS, detections vs truth, and soc's
# throughput as a multiple of each peer's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shared="${SHARED:-$root/../shared}"
lines="${LINES:-1000000}"
runs="${RUNS:-3}"
cs_runs="${CS_RUNS:-$runs}"
work="$(mktemp -d "${TMPDIR:-/tmp}/soc-compare.XXXXXX")"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT

(cd "$root" && cargo build --release -q -p soc-collector --bin socctl)
socctl="${CARGO_TARGET_DIR:-$root/target}/release/socctl"

cp -r "$shared/bench" "$work/bench"
chmod -R u+w "$work/bench"
bench="$work/bench"
rm -f "$bench/results/results.tsv" "$bench/results/detections.txt"
python3 "$bench/gen_corpus.py" --lines "$lines" --out "$bench/data/corpus.log" \
    --truth "$bench/data/truth.json" >&2
cat "$bench/data/corpus.log" >/dev/null # warm the page cache, as the peers' baseline does

# soc, timed by the bench's own helper.
(
    RUNS="$runs"
    # shellcheck source=/dev/null
    source "$bench/lib.sh"
    for i in $(seq "$RUNS"); do
        OUT=work/soc.json measure soc_replay "$i" "socctl rules test --replay --json (shipped rules)" -- \
            "$socctl" rules test --replay "$CORPUS" --json
    done
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

[ -n "${SKIP_FAIL2BAN:-}" ] || RUNS="$runs" bash "$bench/run_fail2ban.sh" >&2
[ -n "${SKIP_CROWDSEC:-}" ] || RUNS="$cs_runs" bash "$bench/run_crowdsec.sh" >&2

python3 - "$bench/results/results.tsv" "$bench/results/detections.txt" <<'PY'
import csv, statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    rows[r["peer"]].append(r)
det = open(sys.argv[2]).read().splitlines()
def detections(prefixes):
    out = []
    for p in prefixes:
        out += [l.split("detections: ", 1)[1] for l in det if l.startswith(p) and "detections: " in l]
    return "; ".join(out)
tools = [
    ("soc", "soc_replay", ["soc ssh-brute-force-by-source", "soc net-port-scan"]),
    ("fail2ban", "fail2ban_regex", ["fail2ban (maxretry=5 findtime=60s)"]),
    ("crowdsec", "crowdsec_pr1", ["crowdsec_pr1 ssh scenarios", "crowdsec_pr1 iptables scan"]),
]
lps = {}
table = []
for name, peer, prefixes in tools:
    rs = rows.get(peer)
    if not rs:
        continue
    med = statistics.median(float(r["lines_per_s"]) for r in rs)
    rss = max(float(r["max_rss_kb"]) for r in rs) / 1024
    lps[name] = med
    table.append((name, len(rs), int(rs[0]["lines"]), med, rss, detections(prefixes)))
print()
print("| tool | runs | lines | median lines/s | peak RSS MiB | detections vs truth (bf, near-miss FP, slow, scan, other FP) | soc ÷ tool |")
print("|---|---|---|---|---|---|---|")
for name, n, lines, med, rss, d in table:
    ratio = "%.1f×" % (lps["soc"] / med) if "soc" in lps and name != "soc" else ""
    print("| %s | %d | %d | %.0f | %.1f | %s | %s |" % (name, n, lines, med, rss, d, ratio))
print()
print("Per-run rows: " + sys.argv[1] + " (kept with KEEP=1)")
PY
