#!/usr/bin/env bash
# Installs what `make run` and `make test` need beyond Go: ClickHouse server and
# client from Debian's packages. Does nothing when they are already installed.
set -euo pipefail
if command -v clickhouse-server >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "clickhouse-server not found: install it (Debian/Ubuntu: apt-get install -y clickhouse-server clickhouse-client)" >&2
	exit 1
fi
echo "installing clickhouse-server and clickhouse-client from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
