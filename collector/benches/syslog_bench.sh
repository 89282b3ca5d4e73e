#!/usr/bin/env bash
# Syslog over TCP: lines/s received and journalled by soc-collector (release
# build) versus rsyslogd receiving the same stream (imtcp) into a file
# (omfile), on this machine, in the same run.
#
#   bash collector/benches/syslog_bench.sh [LINES]      (default 500000)
#
# SYSLOG_EXTRA is added to the collector's [syslog] section, e.g.
#   SYSLOG_EXTRA='batch_max_messages = 20000' bash collector/benches/syslog_bench.sh
# Detection (decoders and rules) runs on the same cores during the run, as in
# production; the collector does far more per line than rsyslog's file output.
#
# The clock runs from the first byte sent until the receiver holds every
# line: for the collector, soc_syslog_messages_journalled_total == LINES (the
# lines are in the sled journal and flushed to disk); for rsyslog, LINES lines
# in its output file (written, not fsynced: rsyslog's default).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-500000}
command -v rsyslogd >/dev/null || { echo "rsyslogd missing: apt-get install rsyslog" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl missing" >&2; exit 1; }

cargo build --release --quiet -p soc-collector --bin soc-collector --example syslog_send
BIN=target/release
TMP=$(mktemp -d)
COLLECTOR_PID=""; RSYSLOG_PID=""
cleanup() {
    [ -n "$COLLECTOR_PID" ] && kill "$COLLECTOR_PID" 2>/dev/null || true
    [ -n "$RSYSLOG_PID" ] && kill "$RSYSLOG_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- soc-collector
cat > "$TMP/collector.toml" <<TOML
[syslog]
tcp_listen = "127.0.0.1:0"
${SYSLOG_EXTRA:-}
${COLLECTOR_EXTRA:-}
[log]
level = "warn"
TOML
"$BIN/soc-collector" --config "$TMP/collector.toml" --data-dir "$TMP/data" --listen 127.0.0.1:0 \
    --metrics-listen 127.0.0.1:0 --ready-file "$TMP/ready.json" 2>"$TMP/collector.log" &
COLLECTOR_PID=$!
for _ in $(seq 1 300); do [ -s "$TMP/ready.json" ] && break; sleep 0.1; done
SYSLOG_TCP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["syslog"]["tcp"])' "$TMP/ready.json")
METRICS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metrics"])' "$TMP/ready.json")
journalled() {
    curl -s "http://$METRICS/metrics" | awk '/^soc_syslog_messages_journalled_total\{sender="unknown"\}/ { print $2 }'
}

# --- rsyslogd: imtcp -> omfile
RPORT=$(free_port)
mkdir -p "$TMP/rs"
cat > "$TMP/rs/rsyslog.conf" <<CONF
global(workDirectory="$TMP/rs")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="$RPORT" ruleset="bench")
ruleset(name="bench") {
  action(type="omfile" file="$TMP/rs/out.log")
}
CONF
rsyslogd -n -f "$TMP/rs/rsyslog.conf" -i "$TMP/rs/pid" 2>"$TMP/rs/stderr" &
RSYSLOG_PID=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$RPORT) 2>/dev/null && break; sleep 0.1; done

# --- the runs
t0=$(now)
"$BIN/examples/syslog_send" "$SYSLOG_TCP" "$N"
while [ "$(journalled)" != "$N" ]; do sleep 0.02; done
t1=$(now)
"$BIN/examples/syslog_send" "127.0.0.1:$RPORT" "$N"
while [ "$(wc -l < "$TMP/rs/out.log" 2>/dev/null || echo 0)" -lt "$N" ]; do sleep 0.02; done
t2=$(now)

python3 - "$N" "$t0" "$t1" "$t2" <<'PY'
import sys
n, t0, t1, t2 = int(sys.argv[1]), *map(float, sys.argv[2:])
c, r = n / (t1 - t0), n / (t2 - t1)
print(f"lines: {n}")
print(f"soc-collector (TCP -> journal, flushed): {t1-t0:8.3f} s  {c:12,.0f} lines/s")
print(f"rsyslogd      (imtcp -> omfile):         {t2-t1:8.3f} s  {r:12,.0f} lines/s")
print(f"ratio collector/rsyslog: {c/r:.2f}")
PY
