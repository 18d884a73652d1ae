package api

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tendhealth/tend/internal/deviceca"
	"github.com/tendhealth/tend/internal/store"
)

// deviceOfOrg loads a device of the caller's organisation; another
// organisation's device does not exist here.
func (h *Handler) deviceOfOrg(r *http.Request, id string) (store.Device, error) {
	d, err := h.cfg.Store.Device(r.Context(), id)
	if err == nil && store.OrgOrDefault(d.Org) != requestOrg(r) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return store.Device{}, &Error{Status: http.StatusNotFound, Detail: fmt.Sprintf("no device %q; create it with POST /fhir/Device first", id)}
	}
	return d, err
}

// decodeOptionalJSON reads a small JSON body into v; an empty body leaves v as is.
func decodeOptionalJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Detail: "could not read the request body"}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &Error{Status: http.StatusBadRequest, Detail: "request body is not valid JSON: " + err.Error()}
	}
	return nil
}

func deviceCAError(err error) error {
	switch {
	case errors.Is(err, deviceca.ErrNoKey):
		return &Error{Status: http.StatusConflict, Detail: "this node cannot issue device certificates: start it with --ca-key-file (the key given to tend ca init), or use tend ca issue"}
	case errors.Is(err, deviceca.ErrNoCA):
		return &Error{Status: http.StatusConflict, Detail: "the organisation has no device CA yet: create it with tend ca init --org ORG"}
	case errors.Is(err, deviceca.ErrWrongKey):
		return &Error{Status: http.StatusConflict, Detail: "this node's --ca-key-file does not open the organisation's CA key"}
	}
	return err
}

type issuedCertificate struct {
	Device      string `json:"device"`
	Serial      string `json:"serial"`
	NotAfter    string `json:"not_after"`
	Certificate string `json:"certificate"`
	PrivateKey  string `json:"private_key"`
	CA          string `json:"ca"`
}

// postDeviceCertificate issues a client certificate for mutual TLS. The
// private key is in the answer only: Tend keeps the serial, not the key.
func (h *Handler) postDeviceCertificate(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := h.deviceOfOrg(r, id); err != nil {
		return err
	}
	var req struct {
		Days int `json:"days"`
	}
	if err := decodeOptionalJSON(r, &req); err != nil {
		return err
	}
	if req.Days < 0 || req.Days > 3650 {
		return &Error{Status: http.StatusBadRequest, Detail: "days must be between 1 and 3650 (0 or absent: 365)"}
	}
	if h.cfg.DeviceCA == nil {
		return deviceCAError(deviceca.ErrNoKey)
	}
	is, err := h.cfg.DeviceCA.Issue(r.Context(), id, time.Duration(req.Days)*24*time.Hour)
	if err != nil {
		return deviceCAError(err)
	}
	h.cfg.Logger.Info("device certificate issued", "device", id, "serial", is.Serial, "not_after", is.NotAfter)
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusCreated, issuedCertificate{Device: id, Serial: is.Serial, NotAfter: is.NotAfter.Format(time.RFC3339),
		Certificate: string(is.Cert), PrivateKey: string(is.Key), CA: string(is.CA)})
}

// revokeDeviceCertificates revokes one certificate of the device (by
// serial) or all of them, and closes the device's open connections at
// once, as a credential rotation does.
func (h *Handler) revokeDeviceCertificates(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := h.deviceOfOrg(r, id); err != nil {
		return err
	}
	var req struct {
		Serial string `json:"serial"`
	}
	if err := decodeOptionalJSON(r, &req); err != nil {
		return err
	}
	ca := h.cfg.DeviceCA
	if ca == nil {
		ca = &deviceca.Authority{Store: h.cfg.Store, Now: h.cfg.Now}
	}
	revoked := []string{}
	if req.Serial != "" {
		serial, err := deviceca.ParseSerial(req.Serial)
		if err != nil {
			return &Error{Status: http.StatusBadRequest, Detail: err.Error()}
		}
		c, err := h.cfg.Store.DeviceCert(r.Context(), serial)
		if errors.Is(err, store.ErrNotFound) || (err == nil && c.Device != id) {
			return &Error{Status: http.StatusNotFound, Detail: fmt.Sprintf("device %q has no certificate %s", id, serial)}
		}
		if err != nil {
			return err
		}
		if _, err := ca.RevokeSerial(r.Context(), serial); err != nil {
			return err
		}
		revoked = append(revoked, serial)
	} else {
		certs, err := ca.RevokeDevice(r.Context(), id)
		if err != nil {
			return err
		}
		for _, c := range certs {
			revoked = append(revoked, c.Serial)
		}
	}
	closed := 0
	for _, k := range h.cfg.Kickers {
		closed += k.Disconnect(id)
	}
	h.cfg.Logger.Info("device certificates revoked", "device", id, "revoked", len(revoked), "closed_connections", closed)
	return writeJSON(w, http.StatusOK, map[string]any{"device": id, "revoked": revoked, "closed_connections": closed})
}

// peerChain is the client certificate chain of a TLS request, if any.
func peerChain(r *http.Request) []*x509.Certificate {
	if r.TLS == nil {
		return nil
	}
	return r.TLS.PeerCertificates
}
