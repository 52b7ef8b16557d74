# Sourced by the front door's benchmarks (bench-ingress.sh, bench-ingress-ab.sh,
# bench-slow-clients.sh) from the repository's root: GitHub's issue_comment example as the body,
# its signature, a scratch directory removed at exit, and the peer's pid for the exit to stop.
shared="${BACKSPACE_SHARED_DIR:-$(pwd)/../shared}"
body="$shared/fixtures/webhooks/issue_comment/created.json"
secret="bench-secret"
work="$(mktemp -d)"
peer=""
# uvicorn runs in a subshell: `jobs -p` names the subshell, so the peer is killed by its own pid.
trap 'kill $(jobs -p) ${peer:-} 2>/dev/null || true; rm -rf "$work"' EXIT
sig="$(python3 -c "import hmac,hashlib,sys;print('sha256='+hmac.new(sys.argv[1].encode(),open(sys.argv[2],'rb').read(),hashlib.sha256).hexdigest())" "$secret" "$body")"
