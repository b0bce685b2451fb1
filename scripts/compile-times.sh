#!/usr/bin/env bash
# Compile-time figures for the CLI path (issue targets: check < 0.5 s, incremental rebuild < 15 s):
#   1. `streamc check` on the word count example (mean of 20 runs);
#   2. a clean release build of a new word-count project (fresh target directory, all dependencies);
#   3. an incremental release rebuild after changing one closure of its pipeline.
# Usage: bash scripts/compile-times.sh   (takes a few minutes; prints the load average with the figures)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p streamc-cli
streamc="$PWD/target/release/streamc"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

start=$(now)
for _ in $(seq 20); do "$streamc" check --quiet examples/word_count.rs; done
end=$(now)
printf 'streamc check examples/word_count.rs: %.1f ms (mean of 20)\n' "$(echo "($end - $start) * 1000 / 20" | bc -l)"

"$streamc" new --quiet "$work/wc"
export CARGO_TARGET_DIR="$work/target"
start=$(now)
"$streamc" build --quiet "$work/wc"
end=$(now)
printf 'clean release build of a new word-count project: %.1f s\n' "$(elapsed "$start" "$end")"

# Change one closure: split on any whitespace instead of on spaces only... and back, so both builds
# are real changes.
sed -i 's/line.split_whitespace()/line.split(char::is_whitespace)/' "$work/wc/src/pipeline.rs"
start=$(now)
"$streamc" build --quiet "$work/wc"
end=$(now)
printf 'incremental release rebuild after changing one closure: %.1f s\n' "$(elapsed "$start" "$end")"

start=$(now)
"$streamc" build --quiet --debug "$work/wc"
end=$(now)
printf '(debug build of the same project, dependencies included: %.1f s)\n' "$(elapsed "$start" "$end")"
sed -i 's/line.split(char::is_whitespace)/line.split_whitespace()/' "$work/wc/src/pipeline.rs"
start=$(now)
"$streamc" build --quiet --debug "$work/wc"
end=$(now)
printf 'incremental debug rebuild after changing one closure: %.1f s\n' "$(elapsed "$start" "$end")"
