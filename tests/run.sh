#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs the
# unit, property and netns integration tests, the benchmarks in test mode,
# and the dependency licence check. Network-namespace tests need root; they
# skip with a message outside CI and fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup.sh

echo "== licences"
tests/check-licences.py

echo "== tests"
cargo test --workspace --all-targets
cargo test --workspace --doc

if cargo fuzz --version >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q nightly; then
    echo "== fuzz (${FUZZ_SECONDS:-20} s per target; seeds are read, new inputs go to a temp corpus)"
    for dir in $(find . -path ./target -prune -o -type d -name fuzz -print); do
        [[ -f $dir/Cargo.toml ]] || continue
        for t in $(cd "$dir" && cargo +nightly fuzz list); do
            corpus=$(mktemp -d)
            (cd "$dir" && cargo +nightly fuzz run "$t" "$corpus" seeds -- \
                -max_total_time="${FUZZ_SECONDS:-20}" -print_final_stats=0 2>&1 | tail -3)
            rm -rf "$corpus"
        done
    done
else
    echo "== fuzz: cargo-fuzz with a nightly toolchain not present; the parsers' never-panic property tests above stand in"
fi
