#!/usr/bin/env bash
# Backspace's front door, two builds against each other: `scripts/bench-ingress-ab.sh BEFORE AFTER
# [PAIRS]` runs each binary (a `backspace` built from another commit, say) PAIRS times (3),
# interleaved, with the load of bench-ingress.sh: wrk closed loop (16 connections, 10 s), then a
# steady 1,000/s for 20 s; `sync` and a pause between servers so one run's disk writes do not
# land in the next. Needs wrk (Debian) and a release build of the webhook_load example.
set -euo pipefail
cd "$(dirname "$0")/.."
before="$1" after="$2" pairs="${3:-3}"
. scripts/bench-common.sh
cargo build --release --quiet --example webhook_load
load="${CARGO_TARGET_DIR:-target}/release/examples/webhook_load"
openssl genrsa -out "$work/key.pem" 2048 2>/dev/null
url="http://127.0.0.1:3921/api/github/webhooks"

one() { # label binary
  rm -f "$work"/backspace.db*
  PORT=3921 APP_ID=1 PRIVATE_KEY_PATH="$work/key.pem" WEBHOOK_SECRET="$secret" \
    ANTHROPIC_API_KEY=unused ANTHROPIC_BASE_URL=http://127.0.0.1:9 GITHUB_API_URL=http://127.0.0.1:9 \
    DATABASE_URL="sqlite://$work/backspace.db" RUST_LOG=warn \
    "$2" serve --bind 127.0.0.1 >"$work/$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -fs http://127.0.0.1:3921/health >/dev/null 2>&1 && break; sleep 0.1; done
  local rps
  rps="$(BODY="$body" SIG="$sig" EVENT=issue_comment \
    wrk -t1 -c16 -d10s -s "$shared/bench/signed_load.lua" "$url" | awk '/Requests\/sec/ {print int($2)}')"
  local steady
  steady="$("$load" "$url" "$body" "$secret" issue_comment 1000 20 | sed 's/.*latency //')"
  echo "$1: $rps req/s; steady 1000/s: $steady; RSS after $(awk '/^VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$pid/status")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  sync; sleep 3
}

for i in $(seq "$pairs"); do
  one before "$before"
  one after "$after"
done
