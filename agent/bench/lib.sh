# Helpers shared by the bench scripts (agent/bench/run.sh,
# collector/benches/end_to_end.sh). Source it after setting BIN (the folder
# of the release binaries).

status_kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# start_collector_in DIR: starts soc-collector with DIR/collector.toml (written
# by the caller) and its data under DIR; sets COL and the socctl environment.
start_collector_in() {
    local c=$1
    "$BIN/soc-collector" --config "$c/collector.toml" --data-dir "$c/data" --listen 127.0.0.1:0 \
        --metrics-listen "" --ready-file "$c/ready.json" 2>"$c/collector.log" &
    COL=$!
    for _ in $(seq 600); do [ -s "$c/ready.json" ] && break; sleep 0.1; done
    eval "$(python3 -c '
import json,sys; r=json.load(open(sys.argv[1]))
print("export SOC_SERVER=https://%s SOC_CA_CERT=%s SOC_TOKEN_FILE=%s" % (r["https"], r["ca_file"], r["admin_token_file"]))
' "$c/ready.json")"
}

# agent_config_in DIR NAME FILE-GLOB: enrols agent NAME at the running
# collector, writes DIR/agent.toml (state under DIR/state, the files of
# FILE-GLOB read from the beginning) and prints its path.
agent_config_in() {
    local dir=$1; mkdir -p "$dir"
    local secret; secret=$("$BIN/socctl" agents enroll "$2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
    cat >"$dir/agent.toml" <<EOF
[agent]
name = "$2"
data_dir = "$dir/state"
[collector]
url = "$SOC_SERVER"
ca_file = "$SOC_CA_CERT"
enrollment_secret = "$secret"
[[sources]]
name = "bench"
include = ["$3"]
start_at = "beginning"
EOF
    echo "$dir/agent.toml"
}
