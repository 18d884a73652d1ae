# Tend build and test entry points. `make test` is what CI runs.
GO ?= go
FUZZTIME ?= 10s

.PHONY: build test unit race fuzz bench vet

build:
	$(GO) build -buildvcs=auto -o bin/tend ./cmd/tend

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

unit:
	$(GO) test -count=1 -timeout 20m ./...

race:
	$(GO) test -count=1 -race -timeout 30m ./internal/mqtt/... ./internal/commit/... ./internal/ingest/... ./internal/store/...

# Each fuzz target runs briefly; `make fuzz FUZZTIME=10m` digs deeper.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeJSON$$' -fuzztime=$(FUZZTIME) ./internal/senml
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeCBOR$$' -fuzztime=$(FUZZTIME) ./internal/senml
	$(GO) test -run='^$$' -fuzz='^FuzzParseObservationSearch$$' -fuzztime=$(FUZZTIME) ./internal/fhir
	$(GO) test -run='^$$' -fuzz='^FuzzReadPacket$$' -fuzztime=$(FUZZTIME) ./internal/mqtt
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeBatch$$' -fuzztime=$(FUZZTIME) ./internal/reading

test: vet unit race fuzz

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=3x ./internal/...
