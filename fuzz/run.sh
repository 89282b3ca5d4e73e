#!/usr/bin/env bash
# Runs every fuzz target for a while, each from seeds made of real inputs.
#
#   bash fuzz/run.sh              # 60 s per target
#   SECONDS_EACH=600 bash fuzz/run.sh decode_and_detect
#
# Needs the nightly toolchain (rustup) and cargo-fuzz, which it installs
# when missing. Not part of `.ci/run`: fuzzing is open-ended; a finding is
# written under fuzz/artifacts/<target>/ and the script stops with
# status 1. Seeds come from the shared log samples (../shared/corpus), the
# shipped rule, decoder and list files, and the bench generator.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
shared="${SHARED:-$root/../shared}"
secs="${SECONDS_EACH:-60}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode_and_detect rule_files engine_state agent_batch syslog_framing backup_file config_files)

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

seeds="$here/seeds"
mkdir -p "$seeds"/{decode_and_detect,rule_files,syslog_framing,agent_batch,engine_state,backup_file,config_files}
# Log lines: the first byte picks the source type (see the target).
i=0
while IFS= read -r -d '' f; do
    i=$((i + 1))
    { printf '\001'; head -c 4096 "$f"; } >"$seeds/decode_and_detect/corpus-$i"
    { printf '\012'; head -c 4096 "$f"; } >"$seeds/syslog_framing/corpus-$i"
done < <(find "$shared/corpus" -type f \( -name '*.log' -o -name '*.txt' -o -name '*.cef' \) -print0 2>/dev/null)
if [ -f "$shared/bench/gen_corpus.py" ]; then
    tmp="$(mktemp -d)"
    python3 "$shared/bench/gen_corpus.py" --lines 400 --out "$tmp/c.log" --truth "$tmp/t.json" >/dev/null
    split -l 40 "$tmp/c.log" "$tmp/part-"
    for p in "$tmp"/part-*; do
        { printf '\000'; cat "$p"; } >"$seeds/decode_and_detect/bench-$(basename "$p")"
    done
    rm -rf "$tmp"
fi
for f in "$root"/rules/rules/*.yml "$root"/rules/decoders/*.yml "$root"/rules/lists/*; do
    [ -f "$f" ] && cp "$f" "$seeds/rule_files/$(basename "$f")"
done
for f in "$root"/deploy/*.toml; do
    [ -f "$f" ] && cp "$f" "$seeds/config_files/$(basename "$f")"
done

cd "$here"
for t in "${targets[@]}"; do
    echo "== $t: $secs s"
    mkdir -p "corpus/$t" "artifacts/$t"
    before="$(find "artifacts/$t" -type f | wc -l)"
    # Built first, unfiltered: a target that does not build fails the run.
    cargo +nightly fuzz build "$t"
    cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 |
        grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|thread .* panicked|Test unit written|ERROR)' || true
    if [ "$(find "artifacts/$t" -type f | wc -l)" -gt "$before" ]; then
        echo "$t: new findings in fuzz/artifacts/$t" >&2
        exit 1
    fi
done
