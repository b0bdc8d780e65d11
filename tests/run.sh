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
    echo "== fuzz (30 s per target)"
    for dir in $(find . -path ./target -prune -o -name fuzz -type d -print); do
        (cd "$dir" && for t in $(cargo +nightly fuzz list); do
            cargo +nightly fuzz run "$t" seeds -- -max_total_time=30
        done)
    done
else
    echo "== fuzz: cargo-fuzz with a nightly toolchain not present; the parsers' never-panic property tests above stand in"
fi
