package fhir

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestDevicePatient(t *testing.T) {
	tests := []struct {
		body    string
		patient string
		status  int
	}{
		{body: `{"resourceType":"Device"}`},
		{body: `{"resourceType":"Device","patient":null}`},
		{body: `{"resourceType":"Device","patient":{"reference":"Patient/p-1.2"}}`, patient: "p-1.2"},
		{body: `{"resourceType":"Device","patient":{"reference":"p1"}}`, status: 422},
		{body: `{"resourceType":"Device","patient":{"reference":"Patient/"}}`, status: 422},
		{body: `{"resourceType":"Device","patient":{"reference":"Patient/a/b"}}`, status: 422},
		{body: `{"resourceType":"Device","patient":"Patient/p1"}`, status: 400},
		{body: `{"resourceType":"Device","modelNumber":["x"]}`, status: 400},
		{body: `{"resourceType":"Device","deviceName":{"name":"x"}}`, status: 400},
		{body: `{"resourceType":"Device","type":[1]}`, status: 400},
		{body: `{"resourceType":"Device","unknownElement":{"kept":true}}`},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			obj, err := decodeResource([]byte(tt.body), "Device")
			if err != nil {
				t.Fatal(err)
			}
			got, err := devicePatient(obj)
			if tt.status != 0 {
				var fe *Error
				if !errors.As(err, &fe) || fe.Status != tt.status {
					t.Fatalf("devicePatient error = %v, want status %d", err, tt.status)
				}
				return
			}
			if err != nil || got != tt.patient {
				t.Fatalf("devicePatient = %q, %v; want %q", got, err, tt.patient)
			}
		})
	}
}

func TestIdentifiersDeduplicated(t *testing.T) {
	obj, err := decodeResource([]byte(`{"resourceType":"Patient","identifier":[
		{"system":"s","value":"1"},{"system":"s","value":"1"},{"system":"s"},{"value":"1"}]}`), "Patient")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := obj.identifiers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0].System != "s" || ids[1].System != "" {
		t.Errorf("identifiers = %+v, want s|1 and |1", ids)
	}
}

// FuzzDecodeResource feeds arbitrary bodies through the Device and Patient
// request decoding: nothing panics, errors are client errors, and what is
// accepted re-encodes as JSON carrying the server's id.
func FuzzDecodeResource(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Device","patient":{"reference":"Patient/p1"},"identifier":[{"system":"s","value":"v"}]}`))
	f.Add([]byte(`{"resourceType":"Patient","id":"x","meta":{"versionId":"7"},"name":[{"family":"<Doe>&"}]}`))
	f.Add([]byte(`{"resourceType":"Device","patient":{"reference":7}}`))
	f.Add([]byte(`{"resourceType":"Device",}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, rt := range []string{"Device", "Patient"} {
			obj, err := decodeResource(body, rt)
			if err != nil {
				var fe *Error
				if !errors.As(err, &fe) || fe.Status != 400 {
					t.Fatalf("decode error %v is not a 400", err)
				}
				continue
			}
			if _, err := obj.identifiers(); err != nil {
				continue
			}
			if rt == "Device" {
				if _, err := devicePatient(obj); err != nil {
					continue
				}
			}
			out := obj.stamp(rt, "srv1", 3, time.Unix(0, 0))
			var back map[string]any
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatalf("stamped resource is not JSON: %v\n%s", err, out)
			}
			if back["id"] != "srv1" || back["resourceType"] != rt {
				t.Fatalf("stamped id/resourceType = %v/%v", back["id"], back["resourceType"])
			}
		}
	})
}
