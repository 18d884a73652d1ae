package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// object is a received resource kept as raw JSON members, so elements this
// server does not understand survive a round trip.
type object map[string]json.RawMessage

// decodeResource parses body as a JSON object of the given resourceType.
func decodeResource(body []byte, resourceType string) (object, error) {
	var obj object
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, jsonError(err)
	}
	if obj == nil {
		return nil, invalid("body must be a JSON object")
	}
	var rt string
	if raw, ok := obj["resourceType"]; !ok || json.Unmarshal(raw, &rt) != nil || rt == "" {
		return nil, invalid("resourceType is required")
	}
	if rt != resourceType {
		return nil, invalid("resourceType %q does not match the URL (%s)", clip(rt), resourceType)
	}
	return obj, nil
}

// jsonError reports where a JSON body is malformed without echoing it.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return &Error{Status: http.StatusBadRequest, Code: "structure", Msg: fmt.Sprintf("invalid JSON at byte offset %d: %s", syn.Offset, syn.Error()), Err: err}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return &Error{Status: http.StatusBadRequest, Code: "structure", Msg: fmt.Sprintf("invalid JSON at byte offset %d: expected %s, found %s", typ.Offset, typ.Type, typ.Value), Err: err}
		}
		return &Error{Status: http.StatusBadRequest, Code: "structure", Msg: fmt.Sprintf("invalid JSON at byte offset %d: %s must be %s, not %s", typ.Offset, clip(field), typ.Type, typ.Value), Err: err}
	default:
		return &Error{Status: http.StatusBadRequest, Code: "structure", Msg: "invalid JSON body", Err: err}
	}
}

// decodeField decodes one member into v, reporting a typed error.
func (o object) decodeField(name string, v any) error {
	raw, ok := o[name]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return &Error{Status: http.StatusBadRequest, Code: "structure", Msg: fmt.Sprintf("%s has the wrong JSON type", name), Err: err}
	}
	return nil
}

// identifiers reads Resource.identifier; entries without a value cannot be
// searched on and are left in the resource only.
func (o object) identifiers() ([]store.Identifier, error) {
	var ids []store.Identifier
	if err := o.decodeField("identifier", &ids); err != nil {
		return nil, err
	}
	seen := map[store.Identifier]bool{}
	out := ids[:0]
	for _, id := range ids {
		if id.Value == "" || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, id)
	}
	return out, nil
}

// stamp sets the server-owned members and encodes o with resourceType, id
// and meta first; the rest follow in name order so output is deterministic.
func (o object) stamp(resourceType, id string, version int, updated time.Time) []byte {
	o["resourceType"], _ = json.Marshal(resourceType)
	o["id"], _ = json.Marshal(id)
	if version > 0 {
		o["meta"], _ = json.Marshal(Meta{VersionID: strconv.Itoa(version), LastUpdated: formatInstant(updated)})
	} else {
		delete(o, "meta")
	}
	keys := make([]string, 0, len(o))
	for k := range o {
		switch k {
		case "resourceType", "id", "meta":
		default:
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	keys = append([]string{"resourceType", "id", "meta"}, keys...)
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	for _, k := range keys {
		raw, ok := o[k]
		if !ok {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(raw)
	}
	buf.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return buf.Bytes() // members are valid JSON, so this does not happen
	}
	return out.Bytes()
}

// renderStored re-stamps a stored resource with the store's id, version and
// time; the stored bytes never decide what meta says.
func renderStored(resourceType, id string, resource []byte, version int, updated time.Time) ([]byte, error) {
	var obj object
	if len(resource) > 0 {
		if err := json.Unmarshal(resource, &obj); err != nil {
			return nil, fmt.Errorf("stored %s/%s is not JSON: %w", resourceType, id, err)
		}
	}
	if obj == nil {
		obj = object{}
	}
	return obj.stamp(resourceType, id, version, updated), nil
}

// devicePatient validates the Device elements this server reads (R4 has
// modelNumber and deviceName; both are accepted as sent) and returns the
// bound patient id ("" when unbound).
func devicePatient(o object) (string, error) {
	var text *string
	var names []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	var typ *Concept
	var patient *Reference
	checks := []struct {
		name string
		v    any
	}{
		{"manufacturer", &text}, {"modelNumber", &text}, {"serialNumber", &text},
		{"deviceName", &names}, {"type", &typ}, {"patient", &patient},
	}
	for _, c := range checks {
		if err := o.decodeField(c.name, c.v); err != nil {
			return "", err
		}
	}
	if patient == nil {
		return "", nil
	}
	id, ok := strings.CutPrefix(patient.Reference, "Patient/")
	if !ok || !validID(id) {
		return "", errorf(http.StatusUnprocessableEntity, "processing", "Device.patient must reference Patient/{id}")
	}
	return id, nil
}
