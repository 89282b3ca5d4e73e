#!/usr/bin/env bash
# Builds `socctl` with profile-guided optimisation (PGO): an instrumented
# build runs a training workload, and the release build is then optimised
# with what that run counted (which branches are taken, which calls are hot,
# how the hot code is laid out). Same source, same output; only the machine
# code differs. Prints the path of the binary.
#
#   bash deploy/pgo.sh                      # -> target/pgo/release/socctl
#   SHARED=DIR bash deploy/pgo.sh           # the bench and corpus folder (default ../shared)
#
# The training workload, none of it the peer benchmark's corpus:
#   * a 300,000-line mixed corpus made by $SHARED/bench/gen_corpus.py with
#     seed 7 (rules/benches/compare.sh uses the generator's default seed),
#     replayed through the shipped rules (`socctl rules test --replay --json`);
#   * every sample log under $SHARED/corpus replayed the same way, so that
#     every shipped decoder runs;
#   * the inline tests of the shipped rules (`socctl rules test`).
#
# Needs llvm-profdata of the LLVM major version rustc was built with
# (`rustc -vV`), as `llvm-profdata-NN` or `llvm-profdata`; on Debian:
# `apt-get install llvm-NN`. Two fat-LTO release builds: 15 to 20 minutes
# on two cores. Only `socctl` is built this way; `soc-collector` and
# `soc-agent` are not (their hot paths need a running collector to train).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${SHARED:-$root/../shared}"
gen="$shared/bench/gen_corpus.py"
data="$root/target/pgo-data"

[ -f "$gen" ] || { echo "pgo.sh: $gen is missing (set SHARED to the folder holding bench/ and corpus/)" >&2; exit 1; }
llvm="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\)\..*/\1/p')"
profdata=""
for p in "llvm-profdata-$llvm" llvm-profdata; do
    if command -v "$p" >/dev/null 2>&1 && "$p" --version 2>/dev/null | grep -q "LLVM version $llvm\."; then
        profdata="$p"
        break
    fi
done
[ -n "$profdata" ] || {
    echo "pgo.sh: rustc uses LLVM $llvm and no llvm-profdata of that version was found; on Debian: apt-get install llvm-$llvm" >&2
    exit 1
}

rm -rf "$data"
mkdir -p "$data/raw"
echo "pgo.sh: instrumented build (target/pgo-gen)" >&2
(cd "$root" && RUSTFLAGS="-Cprofile-generate=$data/raw" CARGO_TARGET_DIR="$root/target/pgo-gen" \
    cargo build --release --quiet -p soc-collector --bin socctl)
# Build scripts ran instrumented too and wrote their own counts; only the
# training runs' are kept.
rm -f "$data"/raw/*.profraw
trainer="$root/target/pgo-gen/release/socctl"

echo "pgo.sh: training" >&2
python3 "$gen" --lines 300000 --seed 7 --out "$data/train.log" --truth "$data/train-truth.json" >/dev/null
# A replay's report (alert counts by rule) is not needed; its error is.
replay() {
    "$trainer" rules test --replay "$1" --json >/dev/null 2>"$data/replay.err" || {
        cat "$data/replay.err" >&2
        echo "pgo.sh: the training replay of $1 failed" >&2
        exit 1
    }
}
replay "$data/train.log"
"$trainer" rules test >/dev/null
n=0
while IFS= read -r -d '' f; do
    replay "$f"
    n=$((n + 1))
done < <(find "$shared/corpus" -type f -name '*.log' -print0 | sort -z)
echo "pgo.sh: trained on $(wc -l <"$data/train.log") generated lines, the inline tests and $n sample logs" >&2
"$profdata" merge -o "$data/socctl.profdata" "$data"/raw/*.profraw

echo "pgo.sh: optimised build (target/pgo)" >&2
(cd "$root" && RUSTFLAGS="-Cprofile-use=$data/socctl.profdata" CARGO_TARGET_DIR="$root/target/pgo" \
    cargo build --release --quiet -p soc-collector --bin socctl)
echo "$root/target/pgo/release/socctl"
