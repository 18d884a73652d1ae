package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// ErrNotConnected is returned for a message a device could not send
// because its connection is down (it is reconnecting meanwhile).
var ErrNotConnected = errors.New("not connected (reconnecting)")

// MQTTSender sends each device's readings over its own MQTT connection
// (username = device id, password = its secret), QoS 1 to
// tend/v1/devices/{id}/obs, and waits for the PUBACK that means durable.
// A lost connection is re-established in the background; what cannot be
// sent meanwhile is returned as an error for the simulator to count.
type MQTTSender struct {
	Addr    string        // host:port or tcp://host:port
	Timeout time.Duration // per message and per connect; default 10 s

	mu      sync.Mutex
	clients map[string]mqtt.Client
}

func (s *MQTTSender) client(ctx context.Context, d *Device) (mqtt.Client, error) {
	s.mu.Lock()
	c, ok := s.clients[d.ID]
	if !ok {
		addr := s.Addr
		if !strings.Contains(addr, "://") {
			addr = "tcp://" + addr
		}
		o := mqtt.NewClientOptions().AddBroker(addr).SetClientID(d.ID).SetUsername(d.ID).SetPassword(d.Secret).
			SetCleanSession(true).SetOrderMatters(false).
			SetAutoReconnect(true).SetConnectRetry(true).
			SetConnectRetryInterval(time.Second).SetMaxReconnectInterval(5 * time.Second).
			SetConnectTimeout(s.timeout()).SetWriteTimeout(s.timeout()).SetKeepAlive(30 * time.Second)
		c = mqtt.NewClient(o)
		if s.clients == nil {
			s.clients = map[string]mqtt.Client{}
		}
		s.clients[d.ID] = c
		// With ConnectRetry the token completes only once connected;
		// the first send waits for it below.
		c.Connect()
	}
	s.mu.Unlock()
	if !c.IsConnectionOpen() && !ok {
		deadline := time.NewTimer(s.timeout())
		defer deadline.Stop()
		for !c.IsConnectionOpen() {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-deadline.C:
				return nil, fmt.Errorf("mqtt connect %s as device %s: %w", s.Addr, d.ID, ErrNotConnected)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return c, nil
}

func (s *MQTTSender) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 10 * time.Second
}

// Send publishes one payload and waits for its PUBACK.
func (s *MQTTSender) Send(ctx context.Context, d *Device, payload []byte) error {
	c, err := s.client(ctx, d)
	if err != nil {
		return err
	}
	if !c.IsConnectionOpen() {
		return fmt.Errorf("device %s: %w", d.ID, ErrNotConnected)
	}
	tok := c.Publish("tend/v1/devices/"+d.ID+"/obs", 1, false, payload)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.timeout()):
		return fmt.Errorf("device %s: no PUBACK within %s", d.ID, s.timeout())
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("device %s: publish: %w", d.ID, err)
	}
	return nil
}

// Close disconnects every device.
func (s *MQTTSender) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.clients {
		c.Disconnect(250)
	}
	s.clients = nil
}

// HTTPSender posts each payload to /api/v1/devices/{id}/obs with the
// device's secret; 202 means durable.
type HTTPSender struct {
	Base   string // e.g. http://127.0.0.1:8080
	Client *http.Client
}

// Send posts one payload.
func (s *HTTPSender) Send(ctx context.Context, d *Device, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Base+"/api/v1/devices/"+url.PathEscape(d.ID)+"/obs", bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/senml+json")
	req.Header.Set("Authorization", "Bearer "+d.Secret)
	hc := s.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("device %s: %w", d.ID, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("device %s: %s: %s", d.ID, resp.Status, problemDetail(body))
	}
	return nil
}
