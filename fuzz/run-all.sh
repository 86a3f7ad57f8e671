#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS_PER_TARGET seconds (default 60), on stable
# Rust (no sanitizer), seeded with the checked-in regression inputs. Installs cargo-fuzz
# if it is missing. Exits non-zero as soon as a target finds something; the reproducer
# is left in fuzz/artifacts/<target>/ — minimize it (`cargo fuzz tmin`), fix the bug,
# and check the input in under fuzz/regressions/<target>/ so `cargo test` replays it.
set -euo pipefail

seconds="${1:-60}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run-all: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets=$(cargo fuzz list)
for target in $targets; do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    seeds=()
    if [ -d "regressions/$target" ]; then
        seeds+=("regressions/$target")
    fi
    echo "run-all: $target for ${seconds}s" >&2
    cargo fuzz run --sanitizer none "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1
done
echo "run-all: no findings in $(echo $targets | wc -w) target(s)" >&2
