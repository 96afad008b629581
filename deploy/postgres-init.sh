#!/bin/sh
# Run once by the postgres image when its data directory is new (/docker-entrypoint-initdb.d):
# creates the role registro connects as. It is an ordinary role (not a superuser, no
# BYPASSRLS) that owns the database, so that the row-level security of migration 0002 holds it
# (docs/decisions/0009-row-level-security.md). The image's POSTGRES_USER stays the superuser,
# for the operator only.
set -eu
: "${REGISTRO_DB_PASSWORD:?set REGISTRO_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
	--set=password="$REGISTRO_DB_PASSWORD" <<'SQL'
CREATE ROLE registro LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
    PASSWORD :'password';
ALTER ROLE registro SET idle_in_transaction_session_timeout = '30s';
SELECT format('ALTER DATABASE %I OWNER TO registro', current_database()) \gexec
SQL
