#!/usr/bin/env bash
# The main job (README): builds tandem in release mode, brings up the lab in
# network namespaces, runs tandemd as the gateway with traffic through it,
# prints the results and tears the lab down. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
cargo build --release -q -p tandem-ctrl -p pktgen -p tandem-netns --bins
exec target/release/lab-demo "$@"
