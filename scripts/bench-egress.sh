#!/usr/bin/env bash
# The egress proxy's cost on this machine: small requests and a 50 MiB download from a local
# HTTP server on the host's loopback, by curl on the host directly and by curl in a sandbox
# through the forwarder and the proxy. Needs the Docker engine and the sandbox test image
# (scripts/build-test-image.sh). Prints the figures BENCHMARKS.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet --example egress_bench -- "${1:-5}"
