package fhir

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// deleteDevice is the one delete Tend serves: an admin removes a device
// record (with its identifiers, binding history and secret; its readings
// stay in the patients' records). A bound device is refused with 409, so
// that deleting never silently ends a binding: unbind it first. Deletion
// keeps no tombstone, so the id then reads as 404, not 410.
func (h *handler) deleteDevice(w http.ResponseWriter, r *http.Request) error {
	if p, ok := auth.PrincipalFrom(r.Context()); !ok || store.Role(p.Role) != store.RoleAdmin {
		return errorf(http.StatusForbidden, "forbidden", "only admins may delete devices")
	}
	id, err := pathID(r, "Device")
	if err != nil {
		return err
	}
	d, err := h.visibleDevice(r.Context(), id)
	if err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	if err := checkIfMatch(r, d.Version); err != nil {
		return err
	}
	if err := h.store.DeleteDevice(r.Context(), id); errors.Is(err, store.ErrConflict) {
		return errorf(http.StatusConflict, "conflict", "the device is bound to a patient; unbind it (update without Device.patient) before deleting it")
	} else if err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	h.deviceChanged(id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
