#!/usr/bin/env bash
# Start one Apache Kafka broker in KRaft mode (combined broker and controller,
# node.id=1) on 127.0.0.1 with its logs under DIR, in the background; wait
# until it accepts connections and print its address, 127.0.0.1:PORT. The
# jars come from Maven Central through Maven on the first run and are cached.
#
#   deploy/kafka/start.sh DIR [PORT] [CONTROLLER_PORT]   # defaults 19092, PORT+1
#   deploy/kafka/start.sh --stop DIR
#
# Env: SLUICE_KAFKA_HOME (jar cache, default $HOME/.cache/sluice-kafka),
# KAFKA_VERSION (default 3.9.1), KAFKA_HEAP (default -Xmx512m -Xms256m).
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

if [[ "${1:-}" == "--stop" ]]; then
  dir=${2:-}
  [[ -n "$dir" ]] || usage
  pid=$(cat "$dir/kafka.pid" 2>/dev/null || true)
  if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
    echo "no running broker for $dir" >&2; exit 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$dir/kafka.pid"; echo "stopped $pid" >&2; exit 0; }
    sleep 0.1
  done
  echo "broker $pid did not stop in 30s; killing" >&2
  kill -KILL "$pid"; rm -f "$dir/kafka.pid"; exit 1
fi

[[ $# -ge 1 && "$1" != -* ]] || usage
dir=$(mkdir -p "$1" && cd "$1" && pwd)
port=${2:-19092}
cport=${3:-$((port + 1))}
version=${KAFKA_VERSION:-3.9.1}
home=${SLUICE_KAFKA_HOME:-$HOME/.cache/sluice-kafka}
jars=$home/kafka_2.13-$version/libs

for tool in java mvn; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool not found: install a JDK (17+) and Maven" >&2; exit 1; }
done

# fetch resolves kafka_2.13 and its runtime dependencies into $jars once; the
# .complete marker keeps a half-finished download from passing as a cache.
fetch() {
  [[ -f "$jars/.complete" ]] && return 0
  local work=$home/kafka_2.13-$version/pom
  mkdir -p "$work"
  rm -rf "$jars"
  # reload4j and slf4j-reload4j are what Kafka's own distribution logs with;
  # the kafka_2.13 pom only names slf4j-api.
  cat > "$work/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.sluice</groupId>
  <artifactId>kafka-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM
  echo "fetching Apache Kafka $version jars with Maven into $jars" >&2
  (cd "$work" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$jars") >&2
  touch "$jars/.complete"
}
fetch

cp=$jars/*
mkdir -p "$dir/data" "$dir/log"
cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
PROPS
cat > "$dir/log4j.properties" <<PROPS
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$dir/log/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
PROPS

pid=$(cat "$dir/kafka.pid" 2>/dev/null || true)
if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
  echo "a broker already runs for $dir (pid $pid)" >&2; exit 1
fi

jvm=(java ${KAFKA_HEAP:--Xmx512m -Xms256m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -Djava.awt.headless=true -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$cp")

# Format once: a second start on the same DIR keeps its topics.
if [[ ! -f "$dir/data/meta.properties" ]]; then
  "${jvm[@]}" kafka.tools.StorageTool format --ignore-formatted \
    --cluster-id "$("${jvm[@]}" kafka.tools.StorageTool random-uuid)" \
    --config "$dir/server.properties" >>"$dir/log/format.log" 2>&1 || {
      echo "formatting storage failed; see $dir/log/format.log:" >&2
      tail -n 20 "$dir/log/format.log" >&2; exit 1; }
fi

(cd "$dir" && exec nohup "${jvm[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/log/stdout.log" 2>&1) &
pid=$!
echo "$pid" > "$dir/kafka.pid"

for _ in $(seq 1 600); do
  if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
    exec 3<&-
    echo "127.0.0.1:$port"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "Kafka exited during startup; log tail:" >&2
    tail -n 30 "$dir/log/stdout.log" "$dir/log/server.log" >&2 2>/dev/null || true
    rm -f "$dir/kafka.pid"; exit 1
  fi
  sleep 0.1
done
echo "Kafka did not accept connections on 127.0.0.1:$port in 60s; see $dir/log" >&2
exit 1
