package fhir

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
)

// TestDeviceDelete walks a device delete through roles, organisations,
// the binding and If-Match, in order.
func TestDeviceDelete(t *testing.T) {
	f := newOrgFixture(t, nil)
	for _, s := range []struct {
		name, who, method, target, body string
		headers                         []string
		want                            int
	}{
		{name: "clinician", who: "north-doc", method: "DELETE", target: "/fhir/Device/d1", want: 403},
		{name: "integration", who: "north-ehr", method: "DELETE", target: "/fhir/Device/d1", want: 403},
		{name: "other organisation's device", who: "north-admin", method: "DELETE", target: "/fhir/Device/ds", want: 404},
		{name: "from the other organisation", who: "south-admin", method: "DELETE", target: "/fhir/Device/d1", want: 404},
		{name: "bound", who: "north-admin", method: "DELETE", target: "/fhir/Device/d1", want: 409},
		{name: "still there", who: "north-admin", method: "GET", target: "/fhir/Device/d1", want: 200},
		{name: "unbind", who: "north-admin", method: "PUT", target: "/fhir/Device/d1", body: `{"resourceType":"Device","id":"d1"}`, want: 200},
		{name: "stale If-Match", who: "north-admin", method: "DELETE", target: "/fhir/Device/d1", headers: []string{"If-Match", `W/"1"`}, want: 412},
		{name: "delete", who: "north-admin", method: "DELETE", target: "/fhir/Device/d1", headers: []string{"If-Match", `W/"2"`}, want: 204},
		{name: "gone", who: "north-admin", method: "GET", target: "/fhir/Device/d1", want: 404},
		{name: "twice", who: "north-admin", method: "DELETE", target: "/fhir/Device/d1", want: 404},
		{name: "patient untouched", who: "north-admin", method: "GET", target: "/fhir/Patient/p1", want: 200},
		{name: "south's device untouched", who: "south-admin", method: "GET", target: "/fhir/Device/ds", want: 200},
		{name: "no delete on Patient", who: "north-admin", method: "DELETE", target: "/fhir/Patient/p1", want: 405},
		{name: "no conditional delete", who: "north-admin", method: "DELETE", target: "/fhir/Device?identifier=x", want: 405},
	} {
		code, hdr, body := f.send(s.who, s.method, s.target, s.body, s.headers...)
		if code != s.want {
			t.Fatalf("%s: %s %s = %d, want %d\n%s", s.name, s.method, s.target, code, s.want, body)
		}
		if code == 204 && len(body) != 0 {
			t.Errorf("%s: 204 with a body: %s", s.name, body)
		}
		if code == 405 && hdr.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", s.name)
		}
	}
	if code, hdr, _ := f.send("north-admin", "DELETE", "/fhir/Patient/p1", ""); code != 405 || hdr.Get("Allow") != "GET, PUT" {
		t.Errorf("Patient DELETE: %d Allow %q", code, hdr.Get("Allow"))
	}
	if _, hdr, _ := f.send("north-admin", "POST", "/fhir/Device/d1", ""); hdr.Get("Allow") != "GET, PUT, DELETE" {
		t.Errorf("Device/{id} Allow = %q", hdr.Get("Allow"))
	}
}

// TestDeviceDeleteDropsCachedBinding: the ingest path is told, as on update.
func TestDeviceDeleteDropsCachedBinding(t *testing.T) {
	f := newOrgFixture(t, nil)
	var changed []string
	h := NewHandler(Config{Store: f.st, Now: func() time.Time { return fixedNow }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Access: access.New(f.st, func() time.Time { return fixedNow }), OnDeviceChanged: func(id string) { changed = append(changed, id) }})
	admin := orgPrincipals["north-admin"]
	do := func(method, target string) int {
		req := httptest.NewRequest(method, target, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(auth.WithPrincipal(req.Context(), admin)))
		return rec.Code
	}
	if code := do("DELETE", "/fhir/Device/d1"); code != http.StatusConflict || len(changed) != 0 {
		t.Fatalf("bound: %d, changed %v", code, changed)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := f.st.Device(t.Context(), "d1")
	must(err)
	d.Patient = ""
	must(f.st.UpdateDevice(t.Context(), &d, fixedNow))
	if code := do("DELETE", "/fhir/Device/d1"); code != http.StatusNoContent || !slices.Equal(changed, []string{"d1"}) {
		t.Fatalf("delete: %d, changed %v", code, changed)
	}
}

func TestDeviceDeleteAccessClassified(t *testing.T) {
	acc, err := RequiredAccess("DELETE", "/Device/d1", url.Values{}, "", nil)
	if err != nil || len(acc) != 1 || acc[0].Type+":"+acc[0].AnyString() != "Device:d" {
		t.Errorf("DELETE /Device/d1: %+v %v, want Device:d", acc, err)
	}
}
