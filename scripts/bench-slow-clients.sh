#!/usr/bin/env bash
# 800 slow connections held against the server (half send half a request head; half a whole
# webhook head with Content-Length: 20 MiB, then a body byte every 3 s; each one closed is opened
# again at once) while signed deliveries go on at a steady rate: delivery latency, server memory,
# and how fast the slow connections are closed. Backspace, then the FastAPI peer in
# ../shared/bench, same load, same machine. Needs: fastapi + uvicorn (pip), a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
# 800 slow connections, the load's own, and the server's: more than the usual 1,024 descriptors.
ulimit -n 4096
. scripts/bench-common.sh
slow="${SLOW:-800}"
seconds="${SECONDS_HELD:-75}"
rate="${RATE:-200}"

cargo build --release --quiet --bin backspace --example webhook_load --example slow_clients
out="${CARGO_TARGET_DIR:-target}/release"
load="$out/examples/webhook_load"
slowc="$out/examples/slow_clients"
openssl genrsa -out "$work/key.pem" 2048 2>/dev/null

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
wait_port() { for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

bench() { # name port pid
  local name="$1" port="$2" pid="$3"
  echo "== $name (ulimit -n $(ulimit -n))"
  echo "idle RSS: $(awk '{printf "%.1f MB", $1/1024}' <<<"$(rss_kb "$pid")")"
  "$slowc" "127.0.0.1:$port" "$slow" "$seconds" >"$work/slow.out" &
  local sc=$!
  local peak=0
  ( while kill -0 "$sc" 2>/dev/null; do r=$(rss_kb "$pid"); echo "$r"; sleep 1; done ) >"$work/rss.out" &
  sleep 5
  echo "-- signed deliveries at $rate/s for $((seconds - 15)) s, beside $slow slow connections:"
  "$load" "http://127.0.0.1:$port/api/github/webhooks" "$body" "$secret" issue_comment "$rate" "$((seconds - 15))"
  wait "$sc"
  cat "$work/slow.out"
  peak=$(sort -n "$work/rss.out" | tail -1)
  echo "server RSS peak during the run: $(awk '{printf "%.1f MB", $1/1024}' <<<"$peak"), after: $(awk '{printf "%.1f MB", $1/1024}' <<<"$(rss_kb "$pid")")"
}

PORT=3911 APP_ID=1 PRIVATE_KEY_PATH="$work/key.pem" WEBHOOK_SECRET="$secret" \
  ANTHROPIC_API_KEY=unused ANTHROPIC_BASE_URL=http://127.0.0.1:9 \
  GITHUB_API_URL=http://127.0.0.1:9 \
  DATABASE_URL="sqlite://$work/backspace.db" RUST_LOG=error \
  "$out/backspace" serve --bind 127.0.0.1 >"$work/backspace.log" 2>&1 &
bs=$!
wait_port 3911 /health || { cat "$work/backspace.log"; exit 1; }
bench "backspace (default limits: headers 10 s, body 30 s, idle 60 s, 1024 connections)" 3911 "$bs"
kill "$bs"; wait "$bs" 2>/dev/null || true

if curl -s -o /dev/null "http://127.0.0.1:3912/"; then
  echo "port 3912 already answers (a peer left from an earlier run?): stop it first" >&2; exit 1
fi
(cd "$shared/bench" && WEBHOOK_SECRET="$secret" DB="$work/peer.db" \
  uvicorn fastapi_webhook:app --host 127.0.0.1 --port 3912 --log-level warning >"$work/peer.log" 2>&1) &
sleep 0.5
peer="$(pgrep -f 'uvicorn fastapi_webhook:app --host 127.0.0.1 --port 3912' | head -1)"
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:3912/" && break; sleep 0.1; done
bench "fastapi peer (1 uvicorn worker, its defaults)" 3912 "$peer"
