package sim

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/hl7/outbound"
	"github.com/tendhealth/tend/internal/mllp"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/senml"
)

// MLLPSender sends readings the way a bedside monitor's gateway does: as
// IHE PCD-01 ORU^R01 messages over MLLP, the device id as the equipment
// identifier (OBX-18), so Tend attributes them through the device's
// binding. HL7 carries clinical observations only; a payload with Tend's
// own device signals (battery, sensor off, fall, doses), which have no
// LOINC or SNOMED CT code, goes through Fallback whole, as a gateway
// would report device status on its own channel.
type MLLPSender struct {
	Addr     string // Tend's MLLP listener, host:port
	Fallback Sender // for device-status payloads; nil refuses them
	// Conns is how many connections carry the fleet (default 8); a device
	// always uses the same one, so its messages stay in order.
	Conns int
	Now   func() time.Time // MSH-7 and SenML relative times; default time.Now

	once    sync.Once
	clients []*mllp.Client
}

// Send converts one SenML payload and sends it, returning an error unless
// Tend acknowledged it with AA.
func (s *MLLPSender) Send(ctx context.Context, d *Device, payload []byte) error {
	s.once.Do(s.init)
	now := s.Now()
	ms, err := senml.DecodeJSON(payload, now, senml.DefaultLimits)
	if err != nil {
		return fmt.Errorf("device %s: simulated payload does not decode: %w", d.ID, err)
	}
	obs := make([]outbound.Observation, 0, len(ms))
	for _, m := range ms {
		r := reading.Reading{Device: d.ID, Code: m.Code, MDC: m.MDC, Value: m.Value, HasValue: m.HasValue,
			Components: m.Components, Unit: m.Unit, Time: m.Time}
		if !outbound.Forwardable(&r) {
			if s.Fallback == nil {
				return fmt.Errorf("device %s: %s has no HL7 code and no fallback sender is set", d.ID, m.Code)
			}
			return s.Fallback.Send(ctx, d, payload)
		}
		obs = append(obs, outbound.Observation{Reading: r})
	}
	if len(obs) == 0 {
		return nil
	}
	msg := outbound.BuildORU(outbound.Header{SendingApp: "TEND-SIM"}, outbound.ControlID(obs), now, outbound.Patient{}, obs)
	answer, err := s.client(d.ID).Send(ctx, msg)
	if err != nil {
		return fmt.Errorf("device %s: %w", d.ID, err)
	}
	ack, err := outbound.ParseAck(answer)
	if err != nil {
		return fmt.Errorf("device %s: %w", d.ID, err)
	}
	if ack.Code != "AA" {
		return fmt.Errorf("device %s: %s: %s", d.ID, ack.Code, ack.Text)
	}
	return nil
}

func (s *MLLPSender) init() {
	if s.Now == nil {
		s.Now = time.Now
	}
	n := s.Conns
	if n <= 0 {
		n = 8
	}
	for range n {
		s.clients = append(s.clients, &mllp.Client{Addr: s.Addr})
	}
}

func (s *MLLPSender) client(device string) *mllp.Client {
	h := fnv.New32a()
	h.Write([]byte(device))
	return s.clients[h.Sum32()%uint32(len(s.clients))]
}

// Close closes the connections.
func (s *MLLPSender) Close() error {
	for _, c := range s.clients {
		c.Close()
	}
	return nil
}
