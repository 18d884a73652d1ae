package store

import "context"

// DeviceDeleter removes device records.
type DeviceDeleter interface {
	// DeleteDevice removes an unbound device with its identifiers, binding
	// history and secret; readings it sent stay, as the patient's record.
	// ErrNotFound if absent; ErrConflict while it is bound to a patient
	// (checked in the same statement as the delete).
	DeleteDevice(ctx context.Context, id string) error
}
