// Package depsreserve pins modules while packages that use them are written.
package depsreserve

import (
	_ "github.com/eclipse/paho.mqtt.golang"
	_ "github.com/fxamacker/cbor/v2"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "golang.org/x/crypto/argon2"
	_ "modernc.org/sqlite"
)
