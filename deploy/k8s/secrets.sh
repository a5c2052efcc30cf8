#!/bin/sh
# Creates the Secrets the Kubernetes manifests reference (nothing secret is in deploy/k8s).
#
#   deploy/k8s/secrets.sh --dev        # namespace marquee-dev: the in-cluster PostgreSQL,
#                                      # Redis and NATS of overlays/dev, random passwords
#   MARQUEE_DATABASE_URL=postgresql+asyncpg://user:pass@host/db \
#   MARQUEE_CACHE_URL=rediss://:pass@host:6380/0 MARQUEE_BROKER_URL=nats://host:4222 \
#   deploy/k8s/secrets.sh marquee      # production: your servers' URLs
#
# Optional: MARQUEE_MAILER_URL (smtp://...), MARQUEE_ADMIN_EMAIL with MARQUEE_ADMIN_PASSWORD.
# Existing Secrets are replaced (kubectl apply); the values never touch the shell history.
set -eu
command -v kubectl >/dev/null || { echo "secrets.sh: kubectl not found" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
umask 077
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32), end="")'; }
put() { printf '%s' "$2" > "$dir/$1"; }

if [ "${1:-}" = "--dev" ]; then
  namespace=marquee-dev
  mkdir "$dir/dev"
  postgres=$(random); redis=$(random)
  printf '%s' "$postgres" > "$dir/dev/POSTGRES_PASSWORD"
  printf '%s' "$redis" > "$dir/dev/REDIS_PASSWORD"
  kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$namespace" create secret generic marquee-dev-dependencies \
    --from-file="$dir/dev" --dry-run=client -o yaml | kubectl apply -f -
  put MARQUEE_DATABASE_URL "postgresql+asyncpg://marquee:$postgres@postgres:5432/marquee"
  put MARQUEE_CACHE_URL "redis://:$redis@redis:6379/0"
  put MARQUEE_BROKER_URL "nats://nats:4222"
  : "${MARQUEE_ADMIN_EMAIL:=admin@marquee.local}"
  : "${MARQUEE_ADMIN_PASSWORD:=$(random)}"
else
  namespace=${1:?usage: secrets.sh --dev | secrets.sh NAMESPACE}
  put MARQUEE_DATABASE_URL "${MARQUEE_DATABASE_URL:?set MARQUEE_DATABASE_URL}"
  put MARQUEE_CACHE_URL "${MARQUEE_CACHE_URL:?set MARQUEE_CACHE_URL}"
  put MARQUEE_BROKER_URL "${MARQUEE_BROKER_URL:?set MARQUEE_BROKER_URL}"
fi
put MARQUEE_JWT_SECRET "$(random)"
put MARQUEE_MAILER_URL "${MARQUEE_MAILER_URL:-file://}"
openssl genpkey -algorithm ed25519 -out "$dir/MARQUEE_TICKET_SIGNING_KEY"
kubectl -n "$namespace" create secret generic marquee \
  --from-file=MARQUEE_DATABASE_URL="$dir/MARQUEE_DATABASE_URL" \
  --from-file=MARQUEE_CACHE_URL="$dir/MARQUEE_CACHE_URL" \
  --from-file=MARQUEE_BROKER_URL="$dir/MARQUEE_BROKER_URL" \
  --from-file=MARQUEE_JWT_SECRET="$dir/MARQUEE_JWT_SECRET" \
  --from-file=MARQUEE_MAILER_URL="$dir/MARQUEE_MAILER_URL" \
  --from-file=MARQUEE_TICKET_SIGNING_KEY="$dir/MARQUEE_TICKET_SIGNING_KEY" \
  --dry-run=client -o yaml | kubectl apply -f -
if [ -n "${MARQUEE_ADMIN_EMAIL:-}" ] && [ -n "${MARQUEE_ADMIN_PASSWORD:-}" ]; then
  put MARQUEE_ADMIN_EMAIL "$MARQUEE_ADMIN_EMAIL"
  put MARQUEE_ADMIN_PASSWORD "$MARQUEE_ADMIN_PASSWORD"
  kubectl -n "$namespace" create secret generic marquee-admin \
    --from-file=MARQUEE_ADMIN_EMAIL="$dir/MARQUEE_ADMIN_EMAIL" \
    --from-file=MARQUEE_ADMIN_PASSWORD="$dir/MARQUEE_ADMIN_PASSWORD" \
    --dry-run=client -o yaml | kubectl apply -f -
  echo "organiser: $MARQUEE_ADMIN_EMAIL / $MARQUEE_ADMIN_PASSWORD"
fi
echo "Secrets written to namespace $namespace."
