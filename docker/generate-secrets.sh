#!/bin/sh
# Rendered by `airside render` from src/airside/packaging; edit the templates there, then `make render`.
# Writes .env next to docker-compose.yml with fresh tokens and a database password, unless it exists.
set -eu
cd "$(dirname "$0")"
if [ -e .env ]; then echo ".env exists; keeping it (delete it to generate new secrets)"; exit 0; fi
gen() { head -c 36 /dev/urandom | base64 | tr -d '/+=\n'; }
umask 077
{
  echo "AIRSIDE_TOKEN=$(gen)"
  echo "AIRSIDE_WORKER_TOKEN=$(gen)"
  echo "AIRSIDE_BAGGAGECLAIM_TOKEN=$(gen)"
  echo "POSTGRES_PASSWORD=$(gen)"
} > .env
echo "wrote $(pwd)/.env"
