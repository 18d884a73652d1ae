package store

import (
	"context"
	"time"
)

// DeviceCA is an organisation's certificate authority for device
// certificates (mutual TLS). Cert is the DER certificate, which is all a
// node needs to verify; SealedKey is the private key encrypted with a key
// the operator holds outside the store, so a copy of the database cannot
// issue certificates.
type DeviceCA struct {
	Org       string
	Cert      []byte // DER
	SealedKey []byte
	Created   time.Time
}

// DeviceCert records a device certificate a CA issued. Only recorded
// certificates are accepted, and a revoked one never again.
type DeviceCert struct {
	Serial   string // lowercase hex, no leading zeros
	Device   string
	Org      string
	Issued   time.Time
	NotAfter time.Time
	Revoked  time.Time // zero while valid
}

// DeviceCAStore keeps device CAs and the certificates they issued.
type DeviceCAStore interface {
	// CreateDeviceCA stores an organisation's CA; a second one for the
	// same organisation is ErrConflict.
	CreateDeviceCA(ctx context.Context, ca DeviceCA) error
	DeviceCA(ctx context.Context, org string) (DeviceCA, error) // ErrNotFound if none
	DeviceCAs(ctx context.Context) ([]DeviceCA, error)          // ordered by org

	// AddDeviceCert records an issued certificate; a known serial is ErrConflict.
	AddDeviceCert(ctx context.Context, c DeviceCert) error
	DeviceCert(ctx context.Context, serial string) (DeviceCert, error)    // ErrNotFound if unknown
	DeviceCerts(ctx context.Context, device string) ([]DeviceCert, error) // oldest first
	// RevokeDeviceCert marks one certificate revoked at at and returns it;
	// revoking it again keeps the first time. Unknown is ErrNotFound.
	RevokeDeviceCert(ctx context.Context, serial string, at time.Time) (DeviceCert, error)
	// RevokeDeviceCerts revokes every unrevoked certificate of the device
	// at at and returns those it revoked (oldest first).
	RevokeDeviceCerts(ctx context.Context, device string, at time.Time) ([]DeviceCert, error)
	// RevokedDeviceCertsSince returns certificates revoked at or after
	// since, in order of revocation, so that running nodes can close the
	// connections of certificates revoked elsewhere.
	RevokedDeviceCertsSince(ctx context.Context, since time.Time) ([]DeviceCert, error)
}
