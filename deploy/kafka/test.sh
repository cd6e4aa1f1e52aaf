#!/usr/bin/env bash
# Run the tests that can use a real Apache Kafka broker against one: start a
# KRaft broker (deploy/kafka/start.sh) in a temporary directory, run the
# tests with SLUICE_KAFKA_BROKERS naming it, and stop the broker and remove
# the directory afterwards, also when the tests fail or are interrupted.
#
#   deploy/kafka/test.sh        # `make test-kafka`
#
# Env: GO (default go), SLUICE_KAFKA_PORT (default 19092), plus start.sh's.
# The tests that read SLUICE_KAFKA_BROKERS are TestExternalBroker in
# ingest/kafka, in ingest/rollup every test that calls startKafka, and the
# cluster tests of cmd/sluice (API processes sharing limits).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
gobin=${GO:-go}
dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-kafka-test.XXXXXX")
cleanup() {
  "$here/start.sh" --stop "$dir" || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
addr=$("$here/start.sh" "$dir" "${SLUICE_KAFKA_PORT:-19092}")
echo "Apache Kafka at $addr (started in $((SECONDS - t0))s)" >&2

t1=$SECONDS
status=0
SLUICE_KAFKA_BROKERS=$addr "$gobin" test -count=1 -run 'External' ./ingest/kafka || status=$?
SLUICE_KAFKA_BROKERS=$addr "$gobin" test -count=1 -run 'Consumer|Crash|Rebalance|ClickHouseOutage' ./ingest/rollup || status=$?
SLUICE_KAFKA_BROKERS=$addr "$gobin" test -count=1 ./ingest/configlog/kafkalog || status=$?
SLUICE_KAFKA_BROKERS=$addr "$gobin" test -count=1 -run 'External' ./internal/kafkatopic || status=$?
SLUICE_KAFKA_BROKERS=$addr "$gobin" test -count=1 -run 'TestCluster' ./cmd/sluice || status=$?
echo "tests against $addr took $((SECONDS - t1))s" >&2
exit "$status"
