package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tendhealth/tend/internal/mqtt"
)

// TopicPrefix is the root of device topics: uplink on
// tend/v1/devices/{id}/obs, commands to the device on tend/v1/devices/{id}/cmd.
const TopicPrefix = "tend/v1/devices/"

// CommandTopic is the topic a device subscribes to for commands and
// notifications sent to it.
func CommandTopic(device string) string { return TopicPrefix + device + "/cmd" }

// MQTT adapts the pipeline to the MQTT front end: it authenticates devices
// at CONNECT, takes their PUBLISHes and decides what they may subscribe to.
type MQTT struct{ P *Pipeline }

var (
	_ mqtt.Authenticator       = MQTT{}
	_ mqtt.Handler             = MQTT{}
	_ mqtt.SubscribeAuthorizer = MQTT{}
)

// Authenticate implements mqtt.Authenticator: username is the device id,
// password its secret.
func (a MQTT) Authenticate(ctx context.Context, clientID, username string, password []byte) error {
	err := a.P.Authenticate(ctx, username, string(password))
	if errors.Is(err, ErrBadCredentials) {
		return mqtt.ErrBadCredentials
	}
	return err
}

// AuthorizeSubscribe implements mqtt.SubscribeAuthorizer: a device may
// subscribe only to its own command topic, spelled out exactly. A device id
// containing '+', '#' or '/' is refused, as its topic would be a wildcard or
// reach into another device's tree.
func (a MQTT) AuthorizeSubscribe(username, filter string) bool {
	return username != "" && !strings.ContainsAny(username, "+#/") && filter == CommandTopic(username)
}

// HandlePublish implements mqtt.Handler. A refused payload is dead-lettered
// and reported through mqtt.Reject (MQTT 5 tells the device; MQTT 3.1.1 has
// no per-message error, so the dead-letter store is the only record).
func (a MQTT) HandlePublish(ctx context.Context, m mqtt.Message) error {
	// MQTT 5 may say the content type; 3.1.1 cannot, and the payload is sniffed.
	req := Request{Source: "mqtt", Device: m.Username, Payload: m.Payload, ContentType: m.ContentType}
	if want := TopicPrefix + m.Username + "/obs"; m.Topic != want {
		code, reason := byte(0x90), fmt.Sprintf("topic %q is not supported; publish readings to %q", m.Topic, want)
		if rest, ok := strings.CutPrefix(m.Topic, TopicPrefix); !ok || !strings.HasPrefix(rest, m.Username+"/") {
			code, reason = 0x87, fmt.Sprintf("device %q may only publish under %s%s/", m.Username, TopicPrefix, m.Username)
		}
		err := a.P.Reject(ctx, req, &Rejection{Status: http.StatusForbidden, Reason: reason})
		return asMQTT(err, code)
	}
	_, err := a.P.Ingest(ctx, req)
	return asMQTT(err, 0x99)
}

func asMQTT(err error, code byte) error {
	var rej *Rejection
	if errors.As(err, &rej) {
		if rej.Status == http.StatusNotFound || rej.Status == http.StatusUnprocessableEntity {
			code = 0x83 // implementation specific: known format, but the device/binding is not usable
		}
		return mqtt.Reject(code, rej.Reason)
	}
	return err
}
