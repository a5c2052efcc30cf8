#!/bin/sh
# Writes the credentials deploy/compose.yaml reads into deploy/secrets/ (mode 0600, never
# committed). Existing files are kept: run it again after deleting one to replace it.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
keep() { [ -s "secrets/$1" ] || { "$2" > "secrets/$1"; echo "wrote deploy/secrets/$1"; }; }

keep postgres_password random
keep redis_password random
keep jwt_secret random
keep admin_password random
database_url() { printf 'postgresql+asyncpg://marquee:%s@postgres:5432/marquee\n' "$(cat secrets/postgres_password)"; }
cache_url() { printf 'redis://:%s@redis:6379/0\n' "$(cat secrets/redis_password)"; }
# file:// keeps mail as .eml files in the container; use smtp://user:pass@host:587?starttls=1.
mailer_url() { printf 'file://\n'; }
ticket_key() { openssl genpkey -algorithm ed25519; }
keep database_url database_url
keep cache_url cache_url
keep mailer_url mailer_url
keep ticket_signing_key ticket_key
