#!/usr/bin/env bash
# Runs a command with NATS and Postgres answering (see services.sh), then
# stops any private instance it had to start.
set -euo pipefail
source "$(dirname "$0")/services.sh"
trap dropline_stop_private_services EXIT
dropline_ensure_services
"$@"
