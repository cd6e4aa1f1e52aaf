#!/usr/bin/env bash
# Checks the running admin and query APIs against their OpenAPI documents
# (ingest/admin/openapi.json, query/openapi.json) with schemathesis: a scratch
# `sluice dev` on free ports, every documented operation called with generated
# valid and invalid inputs, and the run fails on any 5xx, any status, content
# type, header or body the document does not describe.
#
# Environment: OPENAPI_MAX_EXAMPLES (cases per operation and phase, default
# 30), OPENAPI_SEED (reproduce a run), OPENAPI_ADMIN_SCHEMA /
# OPENAPI_QUERY_SCHEMA (check against a local file instead of the served
# document), SCHEMATHESIS_VENV (where schemathesis is installed).
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION=4.32.5
MAX_EXAMPLES=${OPENAPI_MAX_EXAMPLES:-30}
VENV=${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-ci/schemathesis-$ST_VERSION}

if [ ! -x "$VENV/bin/st" ]; then
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install --quiet "schemathesis==$ST_VERSION"
fi
"$VENV/bin/st" --version

work=$(mktemp -d)
pid=
cleanup() {
	status=$?
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		wait "$pid" || true
	fi
	if [ "$status" -ne 0 ] && [ -f "$work/sluice.log" ]; then
		echo "--- last lines of the sluice dev log ---" >&2
		tail -n 40 "$work/sluice.log" >&2
	fi
	rm -rf "$work"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port=$(freeport)
query_port=$(freeport)

go build -o "$work/sluice" ./cmd/sluice
"$work/sluice" dev --data-dir "$work/data" \
	--listen "127.0.0.1:$api_port" --query-listen "127.0.0.1:$query_port" \
	>"$work/stdout" 2>"$work/sluice.log" &
pid=$!

# The demo tenant's tokens are printed once the configuration is applied; the
# listeners answer shortly after.
ready=
for _ in $(seq 1 240); do
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "sluice dev exited before it was ready" >&2
		exit 1
	fi
	if grep -q '^  query token' "$work/stdout" &&
		curl -fsS -o /dev/null "http://127.0.0.1:$api_port/openapi.json" &&
		curl -fsS -o /dev/null "http://127.0.0.1:$query_port/openapi.json"; then
		ready=1
		break
	fi
	sleep 0.5
done
if [ -z "$ready" ]; then
	echo "sluice dev was not ready within 120 s" >&2
	exit 1
fi
admin_token=$(awk '$1 == "admin" && $2 == "token" {print $3}' "$work/stdout")
query_token=$(awk '$1 == "query" && $2 == "token" {print $3}' "$work/stdout")

st_run() { # schema base-url token [st options]
	local schema=$1 url=$2 token=$3
	shift 3
	local args=(
		--url "$url"
		--header "Authorization: Bearer $token"
		--checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
		--max-examples "$MAX_EXAMPLES"
		--workers 1
		--request-timeout 30
		--suppress-health-check all
		--output-sanitize true
	)
	if [ -n "${OPENAPI_SEED:-}" ]; then
		args+=(--seed "$OPENAPI_SEED")
	fi
	# From the scratch directory: st keeps a cache (.schemathesis) where it runs.
	(cd "$work" && "$VENV/bin/st" run "$schema" "${args[@]}" "$@")
}

# The query API first, while the demo tenant's service, metrics and
# application exist, so that generated calls reach ClickHouse. Then the admin
# API without DELETE, then each DELETE, leaf entities before what holds them,
# so each one has a chance to delete something that exists (204) before its
# parent is gone. Tokens cannot be deleted through the admin API, so every
# call stays authenticated.
failed=0
abs() { case "$1" in http://* | https://* | /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
admin_schema=$(abs "${OPENAPI_ADMIN_SCHEMA:-http://127.0.0.1:$api_port/openapi.json}")
query_schema=$(abs "${OPENAPI_QUERY_SCHEMA:-http://127.0.0.1:$query_port/openapi.json}")
echo "=== query API (127.0.0.1:$query_port) ==="
st_run "$query_schema" "http://127.0.0.1:$query_port" "$query_token" || failed=1
echo "=== admin API (127.0.0.1:$api_port), every method but DELETE ==="
st_run "$admin_schema" "http://127.0.0.1:$api_port" "$admin_token" --exclude-method DELETE || failed=1
for path in \
	/services/{service_id}/applications/{app_id}/keys/{key} \
	/services/{service_id}/applications/{app_id}/referrer_filters/{filter} \
	/services/{service_id}/applications/{app_id} \
	/services/{service_id}/plans/{plan_id}/limits/{metric}/{period} \
	/services/{service_id}/plans/{plan_id} \
	/services/{service_id}/metrics/{name} \
	/services/{service_id}; do
	echo "=== admin API: DELETE $path ==="
	st_run "$admin_schema" "http://127.0.0.1:$api_port" "$admin_token" \
		--include-name "DELETE /admin/api/v1$path" || failed=1
done
exit "$failed"
