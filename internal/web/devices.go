package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/store"
)

// onlineWindow: a device heard from within it is shown online.
const onlineWindow = 5 * time.Minute

type deviceRow struct {
	ID, Name, Patient, PatientName string
	LastSeen                       time.Time
	Online                         bool
	Battery                        string
	Firmware                       string // firmware revision(s) from Device.version
	Versions                       string // other Device.version entries, when no firmware is named
}

type devicesData struct {
	Devices  []deviceRow
	Complete bool // false: only devices that have reported are listed
}

// registered remembers the devices registered through this handler, so
// they are listed before their first reading.
type registered struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (g *registered) add(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ids == nil {
		g.ids = map[string]bool{}
	}
	g.ids[id] = true
}

func (g *registered) list() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.ids))
	for id := range g.ids {
		out = append(out, id)
	}
	return out
}

func deviceName(d store.Device) string {
	var res struct {
		DeviceName []struct {
			Name string `json:"name"`
		} `json:"deviceName"`
	}
	if json.Unmarshal(d.Resource, &res) == nil && len(res.DeviceName) > 0 {
		return res.DeviceName[0].Name
	}
	return ""
}

func (h *Handler) loadDevices(ctx context.Context) (devicesData, error) {
	type heard struct {
		last    time.Time
		battery string
	}
	seen := map[string]*heard{}
	sc, err := h.scope(ctx) // only the user's patients and their devices (access.go)
	if err != nil {
		return devicesData{}, err
	}
	ps, err := h.patients.get(ctx, sc.PatientFilter())
	if err != nil {
		return devicesData{}, err
	}
	names := map[string]string{}
	for _, p := range ps {
		names[p.ID] = patientName(p)
		latest, err := h.latest.latest(ctx, p.ID)
		if err != nil {
			return devicesData{}, err
		}
		for _, s := range latest {
			hd := seen[s.Device]
			if hd == nil {
				hd = &heard{}
				seen[s.Device] = hd
			}
			if s.Time.After(hd.last) {
				hd.last = s.Time
			}
			if s.Code == codes.Battery && s.HasValue {
				hd.battery = trimFloat(s.Value) + " %"
			}
		}
	}
	var devs []store.Device
	d := devicesData{}
	f := sc.DeviceFilter()
	f.Limit = 5000
	if devs, _, err = h.cfg.Store.SearchDevices(ctx, f); err != nil {
		return d, fmt.Errorf("list devices: %w", err)
	}
	d.Complete = true
	now := h.cfg.Now()
	for _, dev := range devs {
		row := deviceRow{ID: dev.ID, Name: deviceName(dev), Patient: dev.Patient, PatientName: names[dev.Patient]}
		row.Firmware, row.Versions = deviceVersions(dev.Resource) // firmware.go
		if hd := seen[dev.ID]; hd != nil {
			row.LastSeen, row.Battery = hd.last, hd.battery
			row.Online = now.Sub(hd.last) <= onlineWindow
		}
		d.Devices = append(d.Devices, row)
	}
	sort.Slice(d.Devices, func(i, j int) bool { return d.Devices[i].ID < d.Devices[j].ID })
	return d, nil
}

func (h *Handler) devices(w http.ResponseWriter, r *http.Request) error {
	d, err := h.loadDevices(r.Context())
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "devices", page{Title: "Devices", Nav: "devices", Session: sessionFrom(r.Context()), Data: d})
	return nil
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

const maxDeviceName = 200

// registerDevice creates a device (optionally bound to a patient from now
// on) and shows its new credentials once.
func (h *Handler) registerDevice(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := strings.TrimSpace(r.PostFormValue("id"))
	name := strings.TrimSpace(r.PostFormValue("name"))
	patient := strings.TrimSpace(r.PostFormValue("patient"))
	if id == "" {
		id = strings.ToLower(auth.NewSecret()[:12])
		id = strings.Map(func(c rune) rune {
			if c == '_' {
				return '-'
			}
			return c
		}, id)
	}
	if !store.ValidDeviceID(id) {
		return &pageError{Status: http.StatusBadRequest, Message: "A device id is 1 to 64 letters, digits, '-' or '_'."}
	}
	if len(name) > maxDeviceName {
		return &pageError{Status: http.StatusBadRequest, Message: fmt.Sprintf("The name is longer than %d bytes.", maxDeviceName)}
	}
	res := map[string]any{"resourceType": "Device", "id": id}
	if name != "" {
		res["deviceName"] = []map[string]string{{"name": name, "type": "user-friendly-name"}}
	}
	if patient != "" {
		if _, err := h.visiblePatient(ctx, patient); err != nil {
			var pe *pageError
			if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
				return &pageError{Status: http.StatusBadRequest, Message: "There is no such patient to bind the device to."}
			}
			return err
		}
		res["patient"] = map[string]string{"reference": "Patient/" + patient}
	}
	body, err := json.Marshal(res)
	if err != nil {
		return err
	}
	dev := &store.Device{ID: id, Org: store.OrgOrDefault(sessionFrom(ctx).Org), Patient: patient, Resource: body}
	if err := h.cfg.Store.CreateDevice(ctx, dev, h.cfg.Now().UTC()); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return &pageError{Status: http.StatusConflict, Message: "A device with this id exists already."}
		}
		return fmt.Errorf("create device: %w", err)
	}
	h.registered.add(id)
	h.cfg.Logger.Info("device registered from the dashboard", "device", id, "by", sessionFrom(ctx).User)
	return h.issueCredentials(w, r, id, name)
}

// rotateCredentials replaces a device's secret and closes its open
// connections, so the old secret stops working at once.
func (h *Handler) rotateCredentials(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	dev, err := h.cfg.Store.Device(r.Context(), id)
	if err == nil && store.OrgOrDefault(dev.Org) != store.OrgOrDefault(sessionFrom(r.Context()).Org) {
		err = store.ErrNotFound // another organisation's device does not exist here
	}
	if err != nil {
		return orNotFound(err, "device")
	}
	return h.issueCredentials(w, r, id, deviceName(dev))
}

type credentialsData struct {
	Device, Name, Username, Secret string
}

func (h *Handler) issueCredentials(w http.ResponseWriter, r *http.Request, id, name string) error {
	ctx := r.Context()
	secret := auth.NewSecret()
	if err := h.cfg.Store.SetDeviceSecret(ctx, id, auth.HashSecret(secret)); err != nil {
		return fmt.Errorf("store device secret: %w", err)
	}
	closed := 0
	for _, k := range h.cfg.Kickers {
		closed += k.Disconnect(id)
	}
	if h.cfg.OnDeviceChanged != nil {
		h.cfg.OnDeviceChanged(id)
	}
	h.cfg.Logger.Info("device credentials issued", "device", id, "closed_connections", closed)
	h.render(w, r, http.StatusOK, "credentials", page{Title: "Device credentials", Nav: "devices", Session: sessionFrom(ctx),
		Data: credentialsData{Device: id, Name: name, Username: id, Secret: secret}})
	return nil
}

// bindDevice binds a device to the patient of the page from now on
// (form field "device"), or unbinds it when "unbind" is set; the binding
// history is kept by the store.
func (h *Handler) bindDevice(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	patient := r.PathValue("id")
	if _, err := h.visiblePatient(ctx, patient); err != nil {
		return err
	}
	id := strings.TrimSpace(r.PostFormValue("device"))
	dev, err := h.cfg.Store.Device(ctx, id)
	if err == nil && store.OrgOrDefault(dev.Org) != store.OrgOrDefault(sessionFrom(ctx).Org) {
		err = store.ErrNotFound // another organisation's device cannot be bound here
	}
	if err != nil {
		return orNotFound(err, "device")
	}
	to := patient
	if r.PostFormValue("unbind") != "" {
		if dev.Patient != patient {
			return &pageError{Status: http.StatusConflict, Message: "The device is not bound to this patient."}
		}
		to = ""
	}
	var res map[string]any
	if json.Unmarshal(dev.Resource, &res) != nil || res == nil {
		res = map[string]any{"resourceType": "Device", "id": id}
	}
	if to == "" {
		delete(res, "patient")
	} else {
		res["patient"] = map[string]string{"reference": "Patient/" + to}
	}
	if dev.Resource, err = json.Marshal(res); err != nil {
		return err
	}
	dev.Patient = to
	if err := h.cfg.Store.UpdateDevice(ctx, &dev, h.cfg.Now().UTC()); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return &pageError{Status: http.StatusConflict, Message: "The device's binding changed at a later time already."}
		}
		return fmt.Errorf("update device: %w", err)
	}
	if h.cfg.OnDeviceChanged != nil {
		h.cfg.OnDeviceChanged(id)
	}
	h.cfg.Logger.Info("device binding changed from the dashboard", "device", id, "by", sessionFrom(ctx).User)
	http.Redirect(w, r, "/patients/"+url.PathEscape(patient), http.StatusSeeOther)
	return nil
}
