#!/usr/bin/env bash
# Start a local ClickHouse server on 127.0.0.1 with all its data under DIR,
# in the background, and wait until it answers /ping. The configuration has
# the same shape as internal/chlocal's (keep them in sync). Running it again
# on the same DIR keeps the data.
#
#   deploy/clickhouse/start.sh DIR [TCP_PORT] [HTTP_PORT]   # defaults 9000, 8123
#   deploy/clickhouse/start.sh --stop DIR
#
# Env: CLICKHOUSE_SERVER (default: clickhouse-server on PATH, then
# /usr/bin/clickhouse-server), FOREGROUND=1 to run in the foreground.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

if [[ "${1:-}" == "--stop" ]]; then
  dir=${2:?$(usage)}
  pid=$(cat "$dir/server.pid" 2>/dev/null || true)
  if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
    echo "no running server for $dir"; exit 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || { echo "stopped $pid"; exit 0; }; sleep 0.1; done
  echo "server $pid did not stop in 20s; killing" >&2
  kill -KILL "$pid"; exit 1
fi

[[ $# -ge 1 && "$1" != -* ]] || usage
dir=$(mkdir -p "$1" && cd "$1" && pwd)
tcp=${2:-9000}
http=${3:-8123}
inter=$((http + 1))

bin=${CLICKHOUSE_SERVER:-$(command -v clickhouse-server || true)}
[[ -z "$bin" && -x /usr/bin/clickhouse-server ]] && bin=/usr/bin/clickhouse-server
if [[ -z "$bin" ]]; then
  echo "clickhouse-server not found: apt-get install -y clickhouse-server clickhouse-client" >&2
  exit 1
fi

mkdir -p "$dir"/{data,tmp,user_files,format_schemas,log}
cat > "$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$tcp</tcp_port>
    <http_port>$http</http_port>
    <interserver_http_port>$inter</interserver_http_port>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
</yandex>
XML
cat > "$dir/users.xml" <<'XML'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
XML

if [[ "${FOREGROUND:-}" == 1 ]]; then
  cd "$dir" && exec "$bin" --config-file="$dir/config.xml"
fi

pid=$(cat "$dir/server.pid" 2>/dev/null || true)
if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
  echo "a server already runs for $dir (pid $pid)" >&2; exit 1
fi
(cd "$dir" && exec nohup "$bin" --config-file="$dir/config.xml" >>"$dir/log/stdout.log" 2>&1) &
pid=$!
echo "$pid" > "$dir/server.pid"

ping() { # no curl needed
  { exec 3<>"/dev/tcp/127.0.0.1/$http"; } 2>/dev/null || return 1
  printf 'GET /ping HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  local reply; reply=$(cat <&3); exec 3<&-
  [[ "$reply" == *"Ok."* ]]
}
for _ in $(seq 1 300); do
  if ping; then
    echo "ClickHouse $pid ready: native 127.0.0.1:$tcp, http 127.0.0.1:$http, data $dir"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "clickhouse-server exited during startup; log tail:" >&2
    tail -n 30 "$dir/log/clickhouse-server.err.log" >&2 || true
    exit 1
  fi
  sleep 0.1
done
echo "clickhouse-server did not answer /ping in 30s" >&2
exit 1
