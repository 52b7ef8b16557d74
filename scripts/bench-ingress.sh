#!/usr/bin/env bash
# The webhook front door under load, Backspace beside the FastAPI peer in ../shared/bench, on the
# same machine, body and load. Needs: wrk (Debian), fastapi + uvicorn (pip), a release build.
# Prints the figures that BENCHMARKS.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh

cargo build --release --quiet --bin backspace --example webhook_load
out="${CARGO_TARGET_DIR:-target}/release"
load="$out/examples/webhook_load"
openssl genrsa -out "$work/key.pem" 2048 2>/dev/null

rss() { awk '/^VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

bench() { # name port pid
  local name="$1" port="$2" pid="$3" url="http://127.0.0.1:$2/api/github/webhooks"
  echo "== $name"
  echo "idle RSS: $(rss "$pid")"
  echo "-- wrk, closed loop, 16 connections, 10 s (throughput):"
  BODY="$body" SIG="$sig" EVENT=issue_comment \
    wrk -t1 -c16 -d10s --latency -s "$shared/bench/signed_load.lua" "$url" | grep -E 'Requests/sec|50%|99%|Non-2xx'
  echo "-- open loop, steady 1000/s for 20 s (latency from scheduled send time):"
  "$load" "$url" "$body" "$secret" issue_comment 1000 20
  echo "RSS after load: $(rss "$pid"), peak: $(hwm "$pid")"
}

# A full server (workers and sandboxes too); the payload is a comment without a command, so
# the load is the front door's alone. The model is never called.
PORT=3901 APP_ID=1 PRIVATE_KEY_PATH="$work/key.pem" WEBHOOK_SECRET="$secret" \
  ANTHROPIC_API_KEY=unused ANTHROPIC_BASE_URL=http://127.0.0.1:9 \
  GITHUB_API_URL=http://127.0.0.1:9 \
  DATABASE_URL="sqlite://$work/backspace.db" RUST_LOG=warn \
  "$out/backspace" serve --bind 127.0.0.1 >"$work/backspace.log" 2>&1 &
bs=$!
wait_port 3901 /health || { cat "$work/backspace.log"; exit 1; }
bench backspace 3901 "$bs"
echo "stored deliveries: $(sqlite3 "$work/backspace.db" 'select count(*) from deliveries' 2>/dev/null || echo '?')"
kill "$bs"; wait "$bs" 2>/dev/null || true

if curl -s -o /dev/null "http://127.0.0.1:3902/"; then
  echo "port 3902 already answers (a peer left from an earlier run?): stop it first" >&2; exit 1
fi
(cd "$shared/bench" && WEBHOOK_SECRET="$secret" DB="$work/peer.db" \
  uvicorn fastapi_webhook:app --host 127.0.0.1 --port 3902 --log-level warning >"$work/peer.log" 2>&1) &
sleep 0.5
peer="$(pgrep -f 'uvicorn fastapi_webhook:app --host 127.0.0.1 --port 3902' | head -1)"
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:3902/" && break; sleep 0.1; done
bench "fastapi peer (1 uvicorn worker)" 3902 "$peer"
