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
	$(GO) test -count=1 -race -timeout 30m ./internal/mqtt/... ./internal/commit/... ./internal/ingest/... ./internal/store/... \
		./internal/alarm/... ./internal/alarmdb/... ./internal/evaluator/... ./internal/live/... ./internal/notify/... ./internal/rules/...

# Each fuzz target runs briefly; `make fuzz FUZZTIME=10m` digs deeper. Every
# decoder of outside input has one (package:target).
FUZZ_TARGETS = \
	senml:FuzzDecodeJSON senml:FuzzDecodeCBOR \
	fhir:FuzzParseObservationSearch fhir:FuzzDecodeResource \
	mqtt:FuzzReadPacket mqtt:FuzzMatchTopic \
	reading:FuzzDecodeBatch store:FuzzParseObservationID \
	notify:FuzzVerifySignature notify:FuzzParseRetryAfter \
	rules:FuzzProfile glucose:FuzzHistory api:FuzzWriteEvent

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ./internal/$$pkg"; \
		$(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) ./internal/$$pkg; \
	done

test: vet unit race fuzz

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=3x ./internal/...
