#!/usr/bin/env bash
# `just demo`: a drop of STOCK units, BUYERS simultaneous buyers, one
# `dropline serve`, on this machine, and the tally.
set -euo pipefail
buyers=${1:-3000}
stock=${2:-100}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source deploy/local/services.sh
dropline_ensure_services

serve_pid=""
cleanup() {
  [[ -n $serve_pid ]] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  dropline_stop_private_services
}
trap cleanup EXIT

echo "building (release)..." >&2
cargo build --release --quiet -p dropline -p dropctl -p loadtest
bin=$root/target/release

export DATABASE_URL="$DROPLINE_POSTGRES/dropline_demo"
# Buyers authenticate: the demo's gateway takes HS256 tokens of a
# development secret, and the load test mints each buyer's token with it.
export DROPLINE_JWT_SECRET="${DROPLINE_JWT_SECRET:-dropline-development-secret-not-for-production}"
echo "buyers' tokens: HS256 with the DEVELOPMENT secret (DROPLINE_JWT_SECRET); never in production" >&2
port=$(dropline_free_port)
export DROPLINE_HTTP_ADDR="127.0.0.1:$port"
mkdir -p .demo
"$bin/dropline" migrate
"$bin/dropline" serve >.demo/serve.log 2>&1 &
serve_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://$DROPLINE_HTTP_ADDR/readyz" >/dev/null 2>&1 && break
  kill -0 "$serve_pid" 2>/dev/null || { echo "dropline serve exited; see .demo/serve.log" >&2; exit 1; }
  sleep 0.1
done
echo "dropline serve is up on http://$DROPLINE_HTTP_ADDR (log: .demo/serve.log)" >&2

"$bin/loadtest" --url "http://$DROPLINE_HTTP_ADDR" --buyers "$buyers" --stock "$stock" --json .demo/report.json
sku=$(python3 -c 'import json; print(json.load(open(".demo/report.json"))["sku"])')
"$bin/dropctl" status "$sku"
