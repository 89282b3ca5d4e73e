#!/usr/bin/env bash
# soc-collector end to end: lines received AND evaluated. Prints a report;
# asserts nothing.
#
#   bash collector/benches/end_to_end.sh              # 8M lines (8 x the 1M corpus)
#   COPIES=1 bash collector/benches/end_to_end.sh     # the 1M-line corpus
#   CONFIG=$'[detection]\nallowed_lateness = "5s"' COPIES=1 bash collector/benches/end_to_end.sh
#                                                     # with collector settings
#
# One soc-agent ships a pre-written mixed corpus (../shared/bench/gen_corpus.py)
# to one soc-collector on this machine, both release builds, with the
# collector's default configuration: the journal is flushed before every
# acknowledgement and ingest waits when detection falls more than
# `ingest.max_detection_lag` entries behind. Timed from the agent's start
# until the detection cursor has passed every line. The collector's resident
# memory is sampled every 2 s (the figures at 1/4, 1/2, 3/4 and all of the
# lines are printed, and the peak), with its database size and alert count
# at the end. CONFIG is written into the collector's configuration file
# (empty by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
COPIES="${COPIES:-8}"
WORK="${WORK:-/tmp/soc-collector-bench}"
SHARED="${SHARED:-$ROOT/../shared/bench}"

echo "== building release binaries" >&2
cargo build --release --quiet -p soc-agent -p soc-collector --bins
BIN=$ROOT/target/release

rm -rf "$WORK"; mkdir -p "$WORK"
CORPUS=$WORK/corpus.log
python3 "$SHARED/gen_corpus.py" --lines 1000000 --out "$WORK/one.log" --truth "$WORK/truth.json" >/dev/null
: >"$CORPUS"
for _ in $(seq 1 "$COPIES"); do cat "$WORK/one.log" >>"$CORPUS"; done
rm -f "$WORK/one.log"
LINES=$(wc -l <"$CORPUS")
BYTES=$(stat -c %s "$CORPUS")

# shellcheck source=agent/bench/lib.sh
. "$ROOT/agent/bench/lib.sh"
cpu_s() { awk -v t="$(cpu_ticks "$1")" -v k="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", t/k}'; }
mib() { awk -v k="$1" 'BEGIN{printf "%.0f", k/1024}'; }

C=$WORK/collector; mkdir -p "$C"
printf '%s\n' "${CONFIG:-}" >"$C/collector.toml"
start_collector_in "$C"
trap 'kill ${COL:-} ${AG:-} 2>/dev/null || true' EXIT
status() { "$BIN/socctl" status --json; }
field() { status | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

CFG=$(agent_config_in "$WORK/agent" bench "$CORPUS")

t0=$EPOCHREALTIME
"$BIN/soc-agent" --config "$CFG" 2>"$WORK/agent.log" &
AG=$!
peak=0 next_mark=1 marks=""
while :; do
    cursor=$(field detection_cursor)
    rss=$(status_kb "$COL" VmRSS)
    [ "$rss" -gt "$peak" ] && peak=$rss
    while [ "$next_mark" -le 4 ] && [ "$cursor" -ge $((LINES * next_mark / 4)) ]; do
        marks="$marks  $((next_mark * 25))%: $(mib "$rss") MiB"
        next_mark=$((next_mark + 1))
    done
    [ "$cursor" -ge "$LINES" ] && break
    kill -0 "$AG" || { echo "agent died" >&2; exit 1; }
    sleep 2
done
t1=$EPOCHREALTIME
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
col_cpu=$(cpu_s "$COL") ag_cpu=$(cpu_s "$AG")
alerts=$(field alerts_stored)
db=$(du -sm "$C/data/db" | cut -f1)
sleep 30
after=$(status_kb "$COL" VmRSS)

shown_config=${CONFIG:-default}
shown_config=${shown_config//$'\n'/ }
echo "soc-collector end-to-end report ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "corpus: $LINES lines, $(awk -v b="$BYTES" 'BEGIN{printf "%.1f", b/1048576}') MiB (gen_corpus.py 1M lines x $COPIES); collector configuration: $shown_config"
echo "  received and evaluated    $secs s   $(awk -v n="$LINES" -v s="$secs" 'BEGIN{printf "%d", n/s}') lines/s   (detection cursor at $LINES)"
echo "  CPU                       collector $col_cpu s, agent $ag_cpu s (user+sys)"
echo "  alerts stored             $alerts"
echo "  database                  $db MiB on disk"
echo "  collector VmRSS           $marks; peak $(mib "$peak") MiB; 30 s after the end $(mib "$after") MiB"
