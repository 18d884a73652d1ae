// Package reading defines the canonical reading: the one shape every ingest
// adapter produces after normalisation and everything downstream consumes.
// Nothing past this type knows which wire format a reading arrived in.
package reading

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"time"
)

// Reading is one normalised measurement attributed to a patient.
//
// Values are in the canonical UCUM unit of their code (see package codes);
// panels such as blood pressure carry their parts in Components and leave
// Value unset (NaN is never stored; HasValue tells whether Value is set).
type Reading struct {
	Patient    string      `json:"patient"`
	Device     string      `json:"device"`
	Code       string      `json:"code"`          // LOINC code
	MDC        string      `json:"mdc,omitempty"` // IEEE 11073 MDC reference id, when known
	Value      float64     `json:"value"`
	HasValue   bool        `json:"has_value"`
	Components []Component `json:"components,omitempty"`
	Unit       string      `json:"unit"` // UCUM
	Time       time.Time   `json:"time"` // effective time
	Received   time.Time   `json:"received"`
	Source     string      `json:"source"` // ingest path: "mqtt", "http", ...
}

// Component is one part of a panel reading (e.g. systolic of a BP panel).
type Component struct {
	Code  string  `json:"code"`
	MDC   string  `json:"mdc,omitempty"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Key is the idempotency key of a reading: the same device, code and
// effective time is the same reading however often it is delivered.
func (r *Reading) Key() string {
	h := sha256.New()
	h.Write([]byte(r.Device))
	h.Write([]byte{0})
	h.Write([]byte(r.Code))
	h.Write([]byte{0})
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(r.Time.UnixNano()))
	h.Write(b[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Valid reports whether the numeric parts of r are finite.
func (r *Reading) Valid() bool {
	if r.HasValue && (math.IsNaN(r.Value) || math.IsInf(r.Value, 0)) {
		return false
	}
	for _, c := range r.Components {
		if math.IsNaN(c.Value) || math.IsInf(c.Value, 0) {
			return false
		}
	}
	return r.HasValue || len(r.Components) > 0
}
