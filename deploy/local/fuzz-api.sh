#!/usr/bin/env bash
# `just fuzz-api [SCHEMATHESIS RUN OPTIONS]`: schemathesis (from PyPI, the
# version pinned below) against a live `dropline serve`, with every one of
# its checks and phases (examples, coverage, fuzzing, and stateful: a
# purchase's answer links to its GET). Fails on any server error or any
# response outside crates/gateway/openapi.json.
#
# Builds nothing: run the release binaries (the recipe builds them first).
# Needs NATS and Postgres (deploy/local/with-services.sh; re-runs itself
# through it when NATS_URL is not set). The gateway gets a random buyers'
# secret and operator token, and a fresh open drop with stock to spare;
# schemathesis buys in it as one buyer and reads /ops with the operator
# token. The whole run is bounded by --max-time (default below; a later
# --max-time on the command line wins).
#
#   FUZZ_API_SCHEMA=PATH   fuzz this document instead of the one the binary
#                          serves (to try an edit of openapi.json unbuilt)
#   FUZZ_API_MAX_TIME_S=N  the time budget (default 150)
#   DROPLINE_BIN_DIR=DIR   the binaries (default target/release)
#
# `fuzz-api.sh --install` only installs the pinned schemathesis (CI does
# this among its tools).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

schemathesis_version=4.32.5
venv=$root/.cache/venv-fuzz
schemathesis=$venv/bin/schemathesis

# schemathesis, pinned, in a venv of the project's cache (the system's
# Python packages are left alone).
if [[ $("$schemathesis" --version 2>/dev/null) != "schemathesis, version $schemathesis_version" ]]; then
  echo "installing schemathesis $schemathesis_version from PyPI into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi
if [[ ${1:-} == --install ]]; then
  "$schemathesis" --version
  exit 0
fi

if [[ -z ${NATS_URL:-} || -z ${DROPLINE_POSTGRES:-} ]]; then
  # Private services of its own, so that it can run beside `just test`.
  export DROPLINE_SERVICES_DIR=${DROPLINE_SERVICES_DIR:-$root/.cache/fuzz-api/services}
  exec "$here/with-services.sh" "$here/fuzz-api.sh" "$@"
fi
source "$here/services.sh"

max_time_s=${FUZZ_API_MAX_TIME_S:-150}
bin=${DROPLINE_BIN_DIR:-$root/target/release}
out=$root/.cache/fuzz-api

for tool in dropline dropctl mint-token; do
  [[ -x $bin/$tool ]] || {
    echo "error: $bin/$tool is missing; build first: cargo build --release -p dropline -p dropctl -p loadtest" >&2
    exit 1
  }
done

random_hex() { python3 -c 'import secrets; print(secrets.token_hex(int(__import__("sys").argv[1])))' "$1"; }

mkdir -p "$out"
serve_pid=""
cleanup() {
  if [[ -n $serve_pid ]]; then
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

export DATABASE_URL="$DROPLINE_POSTGRES/dropline_fuzz"
# Secrets of this run only: nothing minted here opens anything else.
DROPLINE_JWT_SECRET=$(random_hex 32)
DROPLINE_OPERATOR_TOKEN=$(random_hex 32)
DROPLINE_HTTP_ADDR="127.0.0.1:$(dropline_free_port)"
export DROPLINE_JWT_SECRET DROPLINE_OPERATOR_TOKEN DROPLINE_HTTP_ADDR
base="http://$DROPLINE_HTTP_ADDR"
"$bin/dropline" migrate >"$out/migrate.log" 2>&1 || {
  cat "$out/migrate.log" >&2
  exit 1
}
"$bin/dropline" serve >"$out/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 300); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$serve_pid" 2>/dev/null || {
    echo "dropline serve exited; see $out/serve.log" >&2
    exit 1
  }
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || {
  echo "dropline serve is not ready after 30 s; see $out/serve.log" >&2
  exit 1
}
echo "dropline serve is up on $base (log: $out/serve.log)" >&2

# A drop that stays open and never sells out: every purchase the fuzzer
# makes stands in line and is decided.
sku=fuzz-$(random_hex 6)
"$bin/dropctl" drop create "$sku" --stock 100000000 --per-user-limit 100 --name "schemathesis" >&2

FUZZ_BUYER_TOKEN=$("$bin/mint-token" fuzz-buyer)
export FUZZ_SKU=$sku FUZZ_BUYER_TOKEN FUZZ_OPERATOR_TOKEN=$DROPLINE_OPERATOR_TOKEN

# schemathesis percent-decodes a path parameter before it encodes it (so
# that an already escaped value is not escaped twice): a key holding "%B9"
# would reach GET .../purchases/{key} as another key, and its 400 would be
# schemathesis' doing. So a purchase's key holds no percent-escape (what a
# link takes from the answer is sent as it is), and a key generated for the
# GET has its "%" escaped, to arrive as generated.
hooks=$out/hooks.py
cat >"$hooks" <<'EOF'
import re

import schemathesis

PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def is_operation(context, method, path):
    operation = context.operation
    return operation is not None and operation.method.upper() == method and operation.path == path


@schemathesis.hook
def filter_headers(context, headers):
    if not headers or not is_operation(context, "POST", "/v1/drops/{sku}/purchases"):
        return True
    key = headers.get("Idempotency-Key")
    return not (isinstance(key, str) and PERCENT_ESCAPE.search(key))


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    if not path_parameters or not is_operation(context, "GET", "/v1/drops/{sku}/purchases/{idempotency_key}"):
        return path_parameters
    key = path_parameters.get("idempotency_key")
    if isinstance(key, str):
        path_parameters = {**path_parameters, "idempotency_key": key.replace("%", "%25")}
    return path_parameters
EOF

# Each security scheme of the document gets its credential (read from the
# environment by schemathesis, not written here); every path's {sku} is the
# open drop.
config=$out/schemathesis.toml
cat >"$config" <<EOF
hooks = "$hooks"

# The gateway may hold a request up to its longest wait (Prefer: wait=N,
# capped at 30 s) plus 15 s of slack; schemathesis gives up after 10 s.
request-timeout = 50

[cache]
directory = "$out/cache"

# Reproductions show a purchase's Idempotency-Key (the default "key" marker
# would hide it); tokens stay hidden.
[output.sanitization]
sensitive-markers = ["token", "secret", "password", "auth", "session", "passwd", "credential"]

[auth.openapi.buyerToken]
bearer = "\${FUZZ_BUYER_TOKEN}"

[auth.openapi.operatorToken]
bearer = "\${FUZZ_OPERATOR_TOKEN}"

[parameters]
"path.sku" = "\${FUZZ_SKU}"

# A purchase's key is one decision forever: a key the fuzzer sends again
# with another body gets 422 (idempotency-key-reused), documented, and no
# schema can say which keys were used before.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

# A body over 4 KiB is refused unread: 413, documented (the default list
# of statuses an invalid request may get lacks it).
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
EOF

if [[ -n ${FUZZ_API_SCHEMA:-} ]]; then
  location=(--url "$base" "$FUZZ_API_SCHEMA")
else
  location=("$base/openapi.json")
fi
started=$SECONDS
status=0
"$schemathesis" --config-file "$config" run "${location[@]}" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-time "$max_time_s" \
  --report junit --report-dir "$out" \
  --no-color \
  "$@" || status=$?
echo "schemathesis finished in $((SECONDS - started)) s with status $status (drop $sku; server log $out/serve.log)" >&2
exit "$status"
