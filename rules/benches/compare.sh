#!/usr/bin/env bash
# Offline detection run of soc on the peer-benchmark corpus, printed next to
# the peers' figures measured on the reference machine.
#
#   bash rules/benches/compare.sh            # 1,000,000 lines (the bench default)
#   LINES=200000 bash rules/benches/compare.sh
#
# Builds `socctl` in release mode, generates the corpus with
# ../shared/bench/gen_corpus.py (same arguments => same bytes as the peers'
# run), replays it with `socctl rules test --replay --json` and the shipped
# rules, and scores the brute-force and port-scan detections against the
# generator's truth.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shared="${SHARED:-$root/../shared}"
lines="${LINES:-1000000}"
work="$(mktemp -d "${TMPDIR:-/tmp}/soc-compare.XXXXXX")"
trap 'rm -rf "$work"' EXIT

(cd "$root" && cargo build --release -q -p soc-collector --bin socctl)
socctl="${CARGO_TARGET_DIR:-$root/target}/release/socctl"

python3 "$shared/bench/gen_corpus.py" --lines "$lines" --out "$work/corpus.log" --truth "$work/truth.json" >&2

start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/rss" "$socctl" rules test --replay "$work/corpus.log" --json \
    >"$work/alerts.json" 2>"$work/replay.err"
end=$(date +%s.%N)
cat "$work/replay.err" >&2

python3 - "$work" "$lines" "$start" "$end" <<'PY'
import json, sys
work, lines, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
truth = json.load(open(f"{work}/truth.json"))
alerts = [json.loads(l) for l in open(f"{work}/alerts.json")]
def keys(rule):
    return {a["group_key"].split("=", 1)[1] for a in alerts if a["rule_id"] == rule}
bf, scan = keys("ssh-brute-force-by-source"), keys("net-port-scan")
T = {k: set(truth[k]) for k in ("bf_ips", "near_miss_ips", "slow_ips", "scan_ips")}
secs = end - start
rss = int(open(f"{work}/rss").read().split()[-1]) / 1024
print(f"| soc replay | 1 | {lines} | {secs:.3f} | {lines/secs:.0f} | peak RSS {rss:.1f} MiB | socctl rules test --replay (release, shipped rules) |")
print(f"soc detections: bf={len(bf & T['bf_ips'])}/{len(T['bf_ips'])} "
      f"near_miss_fp={len(bf & T['near_miss_ips'])} slow={len(bf & T['slow_ips'])}/{len(T['slow_ips'])} "
      f"scan={len(scan & T['scan_ips'])}/{len(T['scan_ips'])} "
      f"other_fp={len((bf - T['bf_ips']) | (scan - T['scan_ips']))}")
PY
echo
echo "Peers on the reference machine (../shared/bench/results/summary.md):"
grep -E '^\| (fail2ban_regex|crowdsec_pr1|grep_E|mawk_detect) ' "$shared/bench/results/summary.md" || true
