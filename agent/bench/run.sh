#!/usr/bin/env bash
# soc-agent benchmarks (issue 3). Prints a report; asserts nothing.
#
#   bash agent/bench/run.sh            # 1 GiB corpus, 3 runs of each
#   SIZE_MB=136 RUNS=1 bash agent/bench/run.sh   # one 1M-line corpus, once
#
# (a) throughput: a pre-written mixed log file (../shared/bench/gen_corpus.py,
#     concatenated to SIZE_MB) from soc-agent to soc-collector on this
#     machine (release builds, HTTPS, journal flushed before every ack),
#     timed from the agent's start until the collector's journal holds every
#     line; side by side with `cat file > /dev/null` and with rsyslog imfile
#     -> omfwd TCP -> a counting sink (../shared/bench/sink.py), same file.
# (b) agent resident memory: idle with 50 watched files; under full load (a).
# (c) agent CPU at a steady 1,000 lines/s for 60 s (utime+stime from /proc).
#
# Needs python3 and rsyslogd (Debian package rsyslog); only loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SIZE_MB="${SIZE_MB:-1024}"
RUNS="${RUNS:-3}"
CPU_SECS="${CPU_SECS:-60}"
WORK="${WORK:-/tmp/soc-agent-bench}"
SHARED="${SHARED:-$ROOT/../shared/bench}"
PORT="${RSYSLOG_PORT:-15514}"
TCK=$(getconf CLK_TCK)

command -v rsyslogd >/dev/null || [ -x /usr/sbin/rsyslogd ] || { echo "rsyslogd missing: apt-get install -y rsyslog" >&2; exit 1; }
export PATH="$PATH:/usr/sbin"

echo "== building release binaries" >&2
cargo build --release --quiet -p soc-agent -p soc-collector --bins
BIN=$ROOT/target/release

rm -rf "$WORK"; mkdir -p "$WORK"
cp -r "$SHARED" "$WORK/shared"
chmod -R u+w "$WORK/shared"
CORPUS=$WORK/corpus.log

echo "== corpus: ${SIZE_MB} MiB" >&2
python3 "$WORK/shared/gen_corpus.py" --lines 1000000 --out "$WORK/one.log" --truth "$WORK/truth.json" >/dev/null
: >"$CORPUS"
while [ "$(stat -c %s "$CORPUS")" -lt $((SIZE_MB * 1024 * 1024)) ]; do cat "$WORK/one.log" >>"$CORPUS"; done
rm -f "$WORK/one.log"
BYTES=$(stat -c %s "$CORPUS")
LINES=$(wc -l <"$CORPUS")
MB=$(awk -v b="$BYTES" 'BEGIN{printf "%.1f", b/1048576}')

now() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN{printf "%d", n/s}'; }
mbps() { awk -v n="$1" -v s="$2" 'BEGIN{printf "%.1f", n/1048576/s}'; }
# shellcheck source=agent/bench/lib.sh
. "$ROOT/agent/bench/lib.sh"

# ---- cat -------------------------------------------------------------
cat "$CORPUS" >/dev/null # same page-cache state for everyone
t0=$(now); cat "$CORPUS" >/dev/null; t1=$(now)
CAT_S=$(secs "$t0" "$t1")

# ---- rsyslog imfile -> omfwd -> sink ---------------------------------
RS=$WORK/rsyslog; mkdir -p "$RS"
cat >"$RS/rsyslog.conf" <<EOF
global(workDirectory="$RS/work")
module(load="imfile" mode="inotify")
template(name="raw" type="string" string="%rawmsg%")
ruleset(name="fwd") {
  action(type="omfwd" target="127.0.0.1" port="$PORT" protocol="tcp" template="raw")
}
input(type="imfile" File="$CORPUS" Tag="bench" ruleset="fwd" freshStartTail="off")
EOF
# rsyslog_run: sets RSY_S RSY_GOT RSY_RSS.
rsyslog_run() {
    rm -rf "$RS/work"; mkdir -p "$RS/work"
    python3 "$WORK/shared/sink.py" "$PORT" "$LINES" 900 >"$RS/sink.out" &
    SINK=$!
    sleep 0.5
    t0=$(now)
    rsyslogd -n -f "$RS/rsyslog.conf" -i "$RS/rsyslogd.pid" 2>"$RS/rsyslogd.err" &
    RSY=$!
    wait "$SINK"
    t1=$(now)
    RSY_RSS=$(status_kb "$RSY" VmHWM || echo NA)
    kill "$RSY"; wait "$RSY" 2>/dev/null || true
    read -r RSY_GOT _ <"$RS/sink.out"
    RSY_S=$(secs "$t0" "$t1")
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
maxof() { printf '%s\n' "$@" | sort -g | tail -1; }

# ---- soc-collector -----------------------------------------------------
# Each measured part gets a fresh collector (empty journal, detection not
# behind), so one run's backlog does not slow the next.
# start_collector NAME: starts it, sets COL and the socctl environment.
start_collector() {
    local c=$WORK/collector-$1; mkdir -p "$c"
    # Detection runs behind the journal; the default max_detection_lag (2M
    # entries) would turn this into a detection benchmark past 2M lines.
    printf '[ingest]\nmax_detection_lag = 1000000000\n' >"$c/collector.toml"
    start_collector_in "$c"
}
stop_collector() {
    COL_HWM=$(status_kb "$COL" VmHWM)
    kill "$COL"; wait "$COL" 2>/dev/null || true
}
trap 'kill ${COL:-} ${AG:-} ${WR:-} 2>/dev/null || true' EXIT
journal() { "$BIN/socctl" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["journal_last_seq"])'; }

agent_config() { agent_config_in "$WORK/agent-$1" "$1" "$2"; } # NAME FILE-GLOB

# ---- (a) throughput, with (b) memory under full load --------------------
# throughput NAME [SHIPPING-TOML]: sets SOC_S GOT AG_HWM AG_CPU peak_rss.
throughput() {
    rm -rf "$WORK/agent-$1"
    start_collector "$1"
    CFG=$(agent_config "$1" "$CORPUS")
    [ -n "${2:-}" ] && printf '[shipping]\n%s\n' "$2" >>"$CFG"
    base=$(journal)
    t0=$(now)
    "$BIN/soc-agent" --config "$CFG" 2>"$WORK/agent-$1.log" &
    AG=$!
    peak_rss=0
    while :; do
        rss=$(status_kb "$AG" VmRSS || echo 0)
        [ "${rss:-0}" -gt "$peak_rss" ] && peak_rss=$rss
        [ $(( $(journal) - base )) -ge "$LINES" ] && break
        kill -0 "$AG" || { echo "agent died" >&2; exit 1; }
        sleep 0.5
    done
    t1=$(now)
    AG_HWM=$(status_kb "$AG" VmHWM)
    AG_CPU=$(awk -v t="$(cpu_ticks "$AG")" -v k="$TCK" 'BEGIN{printf "%.1f", t/k}')
    kill "$AG"; wait "$AG" 2>/dev/null || true
    SOC_S=$(secs "$t0" "$t1")
    GOT=$(( $(journal) - base ))
    stop_collector
}
# Interleaved, RUNS times: rsyslog, then soc with 1,000-line batches, then
# soc with the default shipping settings (the largest batches the
# configuration allows: fewer round trips and fsyncs per line).
RSY_ALL=() S1_ALL=() S2_ALL=() C1_ALL=() C2_ALL=() P1_ALL=() P2_ALL=() H1_ALL=() H2_ALL=() CH_ALL=()
for r in $(seq 1 "$RUNS"); do
    echo "== run $r of $RUNS" >&2
    rsyslog_run
    RSY_ALL+=("$RSY_S")
    throughput "small-$r" $'batch_max_lines = 1000\nbatch_max_bytes = 1048576'
    S1_ALL+=("$SOC_S") C1_ALL+=("$AG_CPU") P1_ALL+=("$peak_rss") H1_ALL+=("$AG_HWM") CH_ALL+=("$COL_HWM")
    GOT1=$GOT
    throughput "default-$r" $'batch_max_lines = 10000\nbatch_max_bytes = 4194304'
    S2_ALL+=("$SOC_S") C2_ALL+=("$AG_CPU") P2_ALL+=("$peak_rss") H2_ALL+=("$AG_HWM") CH_ALL+=("$COL_HWM")
    GOT2=$GOT
done
RSY_S=$(median "${RSY_ALL[@]}")
SOC_S1=$(median "${S1_ALL[@]}") AG_CPU1=$(median "${C1_ALL[@]}") PEAK1=$(maxof "${P1_ALL[@]}") AG_HWM1=$(maxof "${H1_ALL[@]}")
SOC_S2=$(median "${S2_ALL[@]}") AG_CPU2=$(median "${C2_ALL[@]}") PEAK2=$(maxof "${P2_ALL[@]}") AG_HWM2=$(maxof "${H2_ALL[@]}")
COL_HWM_MAX=$(maxof "${CH_ALL[@]}")
start_collector rest

# ---- (b) idle with 50 watched files -------------------------------------
IDLE=$WORK/idle; mkdir -p "$IDLE"
for i in $(seq -w 1 50); do
    for j in $(seq 1 20); do echo "Nov 28 08:00:00 web-01 app[$i]: idle file $i line $j"; done >"$IDLE/f$i.log"
done
CFG=$(agent_config idle "$IDLE/*.log")
base=$(journal)
"$BIN/soc-agent" --config "$CFG" 2>"$WORK/agent-idle.log" &
AG=$!
for _ in $(seq 600); do [ $(( $(journal) - base )) -ge 1000 ] && break; sleep 0.2; done
sleep 10
IDLE_RSS=$(status_kb "$AG" VmRSS)
IDLE_HWM=$(status_kb "$AG" VmHWM)
IDLE_FDS=$(ls "/proc/$AG/fd" | wc -l)
c0=$(cpu_ticks "$AG"); sleep 30; c1=$(cpu_ticks "$AG")
IDLE_CPU=$(awk -v t=$((c1 - c0)) -v k="$TCK" 'BEGIN{printf "%.2f", 100*t/k/30}')
kill "$AG"; wait "$AG" 2>/dev/null || true

# ---- (c) CPU at 1,000 lines/s --------------------------------------------
STEADY=$WORK/steady.log; : >"$STEADY"
CFG=$(agent_config steady "$STEADY")
"$BIN/soc-agent" --config "$CFG" 2>"$WORK/agent-steady.log" &
AG=$!
python3 - "$STEADY" $((CPU_SECS + 15)) <<'EOF' &
import sys, time
path, secs = sys.argv[1], float(sys.argv[2])
start = time.monotonic(); n = 0
with open(path, "a", buffering=1 << 16) as f:
    while time.monotonic() - start < secs:
        due = int((time.monotonic() - start) * 1000)  # 1,000 lines/s
        while n < due:
            f.write("Nov 28 08:02:44 web-01 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=203.0.113.%d DST=192.0.2.10 PROTO=TCP SPT=%d DPT=22 seq=%d\n" % (n % 250, 1024 + n % 60000, n))
            n += 1
        f.flush()
        time.sleep(0.01)
EOF
WR=$!
sleep 10 # warm-up
base=$(journal)
c0=$(cpu_ticks "$AG"); t0=$(now)
sleep "$CPU_SECS"
c1=$(cpu_ticks "$AG"); t1=$(now)
STEADY_N=$(( $(journal) - base ))
STEADY_RSS=$(status_kb "$AG" VmRSS)
wait "$WR" || true
kill "$AG"; wait "$AG" 2>/dev/null || true
STEADY_S=$(secs "$t0" "$t1")
STEADY_CPU=$(awk -v t=$((c1 - c0)) -v k="$TCK" -v s="$STEADY_S" 'BEGIN{printf "%.2f", 100*t/k/s}')
stop_collector

# ---- report ---------------------------------------------------------------
kib_mib() { awk -v k="$1" 'BEGIN{printf "%.1f MiB", k/1024}'; }
cat <<EOF

soc-agent benchmark report ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))
corpus: $LINES lines, $MB MiB (gen_corpus.py 1M lines, concatenated), page cache warm

(a) throughput, same file, same run: medians of $RUNS runs (seconds per run: rsyslog ${RSY_ALL[*]}; soc 1,000-line ${S1_ALL[*]}; soc default ${S2_ALL[*]})
  cat > /dev/null                 ${CAT_S} s   $(rate "$LINES" "$CAT_S") lines/s   $(mbps "$BYTES" "$CAT_S") MB/s
  rsyslog imfile->omfwd tcp       ${RSY_S} s   $(rate "$RSY_GOT" "$RSY_S") lines/s   $(mbps "$BYTES" "$RSY_S") MB/s   (sink got $RSY_GOT of $LINES; no delivery guarantee; rsyslogd VmHWM $(kib_mib "${RSY_RSS:-0}"))
  soc-agent -> soc-collector      ${SOC_S1} s   $(rate "$GOT1" "$SOC_S1") lines/s   $(mbps "$BYTES" "$SOC_S1") MB/s   (1,000-line batches, 1 MiB; journalled $GOT1 of $LINES, durable and acknowledged)
    default shipping (10,000 lines) ${SOC_S2} s   $(rate "$GOT2" "$SOC_S2") lines/s   $(mbps "$BYTES" "$SOC_S2") MB/s   (batch_max_lines 10000, batch_max_bytes 4 MiB; journalled $GOT2 of $LINES)
  soc / rsyslog                   $(awk -v a="$RSY_S" -v b="$SOC_S1" 'BEGIN{printf "%.2f", a/b}')x with 1,000-line batches, $(awk -v a="$RSY_S" -v b="$SOC_S2" 'BEGIN{printf "%.2f", a/b}')x with the defaults     soc / cat  $(awk -v a="$CAT_S" -v b="$SOC_S1" 'BEGIN{printf "%.4f", a/b}')x
  agent CPU for the run           ${AG_CPU1} s / ${AG_CPU2} s (user+sys, 1,000-line batches / defaults); collector VmHWM (max over the throughput runs) $(kib_mib "$COL_HWM_MAX")

(b) agent memory
  idle, 50 watched files          VmRSS $(kib_mib "$IDLE_RSS")  VmHWM $(kib_mib "$IDLE_HWM")  open fds $IDLE_FDS  CPU ${IDLE_CPU}% of a core over 30 s   (target < 15 MiB)
  full load (a), 1,000-line batch VmRSS peak sampled $(kib_mib "$PEAK1")  VmHWM $(kib_mib "$AG_HWM1")   (target < 40 MiB)
  full load (a), defaults         VmRSS peak sampled $(kib_mib "$PEAK2")  VmHWM $(kib_mib "$AG_HWM2")   (target < 40 MiB)
  steady 1,000 lines/s            VmRSS $(kib_mib "$STEADY_RSS")

(c) agent CPU at 1,000 lines/s
  ${STEADY_N} lines journalled in ${STEADY_S} s; agent utime+stime = ${STEADY_CPU}% of one core   (target < 2%)
EOF
