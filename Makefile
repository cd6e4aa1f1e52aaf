# Sluice: `make run` starts an all-in-one instance with a demo tenant;
# `make test` runs every test. See README.md.
GO        ?= go
BIN       ?= bin/sluice
DATA_DIR  ?= ./.sluice
FUZZTIME  ?= 10s
STATICCHECK_VERSION ?= v0.8.2

PLUGIN_BIN ?= plugin/dist/gpx_sluice_linux_amd64

.PHONY: all build deps run test test-unit test-plugin test-kafka test-openapi test-regions fuzz bench bench-load bench-freshness bench-query bench-catalog lint plugin plugin-deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sluice

## run: all roles in one process, embedded broker, local ClickHouse, demo tenant.
run: build deps
	$(BIN) dev --data-dir $(DATA_DIR)

## deps: install ClickHouse when missing (root on Debian), else say how.
deps:
	bash deploy/install-deps.sh

## test: every test (unit, integration against real ClickHouse and kfake), race detector on, then short fuzzing, then the Grafana plugin's.
test: deps test-unit fuzz test-plugin

test-unit:
	$(GO) test -race -count=1 -timeout 14m ./...

## plugin: the Grafana data source, production build: plugin/dist with module.js, plugin.json and the backend binary (needs node and npm).
plugin: plugin-deps
	cd plugin && npm run build
	cd plugin && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -o dist/gpx_sluice_linux_amd64 ./pkg

plugin-deps:
	cd plugin && npm ci --no-audit --no-fund

## test-plugin: the plugin's own Go module (./pkg/...: node_modules holds Go files of its own) (its tests drive the built binary over gRPC against `sluice dev`), then the frontend's unit tests and type check.
test-plugin: plugin
	cd plugin && SLUICE_PLUGIN_BINARY=$(abspath $(PLUGIN_BIN)) $(GO) test -race -count=1 ./pkg/...
	cd plugin && npm run typecheck && npm run test:ci

## test-kafka: the Kafka-facing tests against a real Apache Kafka broker (KRaft, jars via Maven, needs java and mvn).
test-kafka:
	GO=$(GO) bash deploy/kafka/test.sh

## test-regions: the long multi-region runs (three regions; a region cut off for SLUICE_TEST_CUT, default 30s, under load).
test-regions:
	$(GO) test -race -tags regions -count=1 -timeout 10m -run '^TestRegions' -v ./cmd/sluice

## test-openapi: schemathesis (pip, cached virtualenv) against a scratch `sluice dev`: the admin and query APIs match their OpenAPI documents.
test-openapi:
	bash .ci/openapi.sh

## fuzz: every Fuzz target for FUZZTIME each (CI runs this through `make test`).
fuzz:
	FUZZTIME=$(FUZZTIME) bash .ci/fuzz.sh

## bench: the benchmarks whose figures bench/RESULTS.md quotes.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./limiter/ ./ingest/...

## bench-load: the load generator's standard set (bench/loadrun) against a no-op server, the API
## with an in-memory event sink and `sluice dev`, in one run (about 3-4 minutes); writes
## bench/load-results/ and the load section of bench/RESULTS.md.
bench-load: build
	$(GO) run ./bench/loadrun -sluice $(BIN)

## bench-freshness: end-to-end freshness (authrep -> visible in ClickHouse) at a paced 20,000 calls/s.
bench-freshness:
	$(GO) run ./bench/freshness

## bench-catalog: a node with a million applications (startup, memory, admin changes seen by authrep).
bench-catalog:
	$(GO) run ./bench/catalog gen -out $(or $(TMPDIR),/tmp)/sluice-catalog-1m.json
	$(GO) run ./bench/catalog mem -config $(or $(TMPDIR),/tmp)/sluice-catalog-1m.json
	$(GO) run ./bench/catalog run -config $(or $(TMPDIR),/tmp)/sluice-catalog-1m.json

## bench-query: the query API benchmarks (30 days x 1,000 apps x 3 metrics; generation takes 7-13 min).
bench-query:
	$(GO) run ./bench/query gen
	$(GO) run ./bench/query run
	$(GO) run ./bench/query clean

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd plugin && $(GO) vet ./pkg/... && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./pkg/...

clean:
	rm -rf bin $(DATA_DIR) plugin/dist
