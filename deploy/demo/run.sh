#!/usr/bin/env bash
# Starts a complete soc on this machine on embedded defaults: a collector
# (data under ./demo-data, a self-signed certificate made on first start, the
# shipped rules) and an agent tailing copies of the bundled sample firewall and
# antivirus logs, with a few new lines appended every few seconds. Ctrl-C stops both.
#
# Environment: SOC_DEMO_DIR (default ./demo-data), SOC_DEMO_LISTEN (default
# 127.0.0.1:8443), SOC_DEMO_METRICS (default 127.0.0.1:9464).
set -euo pipefail
cd "$(dirname "$0")/../.."
top=$(pwd)
demo=${SOC_DEMO_DIR:-$top/demo-data}
listen=${SOC_DEMO_LISTEN:-127.0.0.1:8443}
metrics=${SOC_DEMO_METRICS:-127.0.0.1:9464}

echo "building soc (release) ..."
cargo build --release --quiet -p soc-collector -p soc-agent --bins
bin=$top/target/release
mkdir -p "$demo/logs" "$demo/agent"
# The samples are copied with their times moved to the last few minutes
# (same spacing, the last line a minute ago), so that they read as what just
# happened: with the dates they were written with, the first live lines would
# come days after them, and the rule on silent log sources would report the
# gap.
redate() {
    local last now line ts
    last=$(tail -n 1 "$1")
    last=$(date -d "${last:0:15}" +%s)
    now=$(date +%s)
    while IFS= read -r line; do
        ts=$(date -d "${line:0:15}" +%s)
        printf '%s%s\n' "$(date -d "@$((ts - last + now - 60))" '+%b %e %H:%M:%S')" "${line:15}"
    done <"$1"
}
for f in ufw.log clamav.log; do
    [ -f "$demo/logs/$f" ] || redate "deploy/demo/samples/$f" >"$demo/logs/$f"
done

pids=()
cleanup() {
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "demo stopped; its data stays in $demo (delete it to start afresh)"
}
trap cleanup EXIT INT TERM

rm -f "$demo/ready.json"
"$bin/soc-collector" --data-dir "$demo/collector" --listen "$listen" --metrics-listen "$metrics" \
    --ready-file "$demo/ready.json" 2>>"$demo/collector.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -f "$demo/ready.json" ] && break; sleep 0.2; done
[ -f "$demo/ready.json" ] || { echo "the collector did not start; see $demo/collector.log" >&2; exit 1; }

cat >"$demo/socctl.env" <<ENV
export SOC_SERVER=https://$listen
export SOC_TOKEN_FILE=$demo/collector/admin.token
export SOC_CA_CERT=$demo/collector/tls/ca.pem
export PATH=$bin:\$PATH
ENV
# shellcheck disable=SC1091
. "$demo/socctl.env"

if [ ! -f "$demo/agent/agent.key" ]; then
    secret=$(socctl agents enroll demo-agent --json | sed -n 's/.*"secret":"\([^"]*\)".*/\1/p')
    [ -n "$secret" ] || { echo "could not enrol the demo agent" >&2; exit 1; }
    printf '%s\n' "$secret" >"$demo/agent/enrollment.secret"
fi
cat >"$demo/agent.toml" <<TOML
[agent]
name = "demo-agent"
data_dir = "$demo/agent"

[collector]
url = "https://$listen"
ca_file = "$demo/collector/tls/ca.pem"
key_file = "agent.key"
enrollment_secret_file = "$demo/agent/enrollment.secret"

[[sources]]
name = "ufw"
type = "iptables"
include = ["$demo/logs/ufw.log"]
start_at = "beginning"

[[sources]]
name = "clamav"
type = "clamav"
include = ["$demo/logs/clamav.log"]
start_at = "beginning"
TOML
"$bin/soc-agent" --config "$demo/agent.toml" 2>>"$demo/agent.log" &
pids+=($!)

# Keep the demo alive: a blocked probe from a new address every few seconds,
# and now and then a malware detection.
(
    n=0
    while sleep 5; do
        n=$((n + 1))
        ts=$(date '+%b %e %H:%M:%S')
        echo "$ts web-01 kernel: [9$n.000000] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=203.0.113.$((n % 250 + 1)) DST=192.0.2.10 LEN=60 TOS=0x00 PREC=0x00 TTL=50 ID=$n DF PROTO=TCP SPT=$((40000 + n)) DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0" >>"$demo/logs/ufw.log"
        if [ $((n % 6)) -eq 0 ]; then
            echo "$ts web-01 clamd[812]: /home/clerk/Downloads/setup_$n.exe: Win.Trojan.Agent-$n FOUND" >>"$demo/logs/clamav.log"
        fi
    done
) &
pids+=($!)

sleep 5
echo
echo "soc is running: collector https://$listen, metrics http://$metrics/metrics"
echo "logs: $demo/collector.log, $demo/agent.log"
echo
socctl alerts list --limit 10 || true
echo
echo "In another terminal:"
echo "  . $demo/socctl.env"
echo "  socctl alerts list            # newest alerts"
echo "  socctl alerts show <ID>       # the raw lines and fields behind one"
echo "  socctl alerts ack <ID> --note 'checked'"
echo "  socctl agents list"
echo
echo "Press Ctrl-C to stop."
wait
