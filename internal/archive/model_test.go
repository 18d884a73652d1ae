package archive

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/store"
)

// modelExport makes an installation with everything the access model,
// OAuth, sign-in and the audit trail keep, exports it and returns the file
// and the source installation.
func modelExport(t *testing.T) ([]byte, Stats, installation) {
	t.Helper()
	ctx := context.Background()
	in := newInstallation(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(in.st.CreateOrg(ctx, store.Organisation{ID: "north", Name: "North Hospital", PrivacyOfficer: "dpo-north", Created: t0}))
	must(in.st.CreateOrg(ctx, store.Organisation{ID: "south", Name: "South Clinic", Created: t0.Add(time.Second)}))
	for _, u := range []store.User{
		{ID: "admin", Name: "Admin", Role: store.RoleAdmin, PasswordHash: "h0", Created: t0},
		{ID: "dr-north", Name: "Dr North", Role: store.RoleClinician, Org: "north", PasswordHash: "h1", Created: t0},
		{ID: "dr-south", Name: "Dr South", Role: store.RoleClinician, Org: "south", PasswordHash: "h2", Created: t0},
		{ID: "carer", Name: "Carer", Role: store.RoleCaregiver, Org: "north", PasswordHash: "h3", Created: t0},
		{ID: "pat", Name: "Pat", Role: store.RolePatient, Org: "north", Patient: "pn1", PasswordHash: "h4", Created: t0},
	} {
		must(in.st.CreateUser(ctx, u))
	}
	must(in.st.SetUserTOTP(ctx, "dr-north", []byte("sealed-secret"), true))
	if ok, err := in.st.AcceptTOTPStep(ctx, "dr-north", 59000123); err != nil || !ok {
		t.Fatalf("accept step: %v %v", ok, err)
	}
	must(in.st.SetUserTOTP(ctx, "dr-south", []byte("pending-secret"), false))
	for range 3 {
		if _, err := in.st.RecordSignInFailure(ctx, "user:dr-south", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	must(in.st.CreatePatient(ctx, &store.Patient{ID: "pn1", Org: "north", Resource: []byte(`{"resourceType":"Patient"}`)}))
	must(in.st.CreatePatient(ctx, &store.Patient{ID: "ps1", Org: "south", Resource: []byte(`{"resourceType":"Patient"}`)}))
	must(in.st.CreateDevice(ctx, &store.Device{ID: "dn1", Org: "north", Patient: "pn1"}, t0))
	must(in.st.CreateDeviceCA(ctx, store.DeviceCA{Org: "north", Cert: []byte("der"), SealedKey: []byte("sealed-ca-key"), Created: t0}))
	must(in.st.AddDeviceCert(ctx, store.DeviceCert{Serial: "1a", Device: "dn1", Org: "north", Issued: t0, NotAfter: t0.Add(24 * time.Hour)}))
	must(in.st.AddDeviceCert(ctx, store.DeviceCert{Serial: "1b", Device: "dn1", Org: "north", Issued: t0.Add(time.Second), NotAfter: t0.Add(24 * time.Hour)}))
	if _, err := in.st.RevokeDeviceCert(ctx, "1a", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	must(in.st.AddNote(ctx, store.Note{ID: "n1", Org: "north", Patient: "pn1", Author: "dr-north", Role: store.RoleClinician, Text: "stable", Created: t0}))
	must(in.st.AddNote(ctx, store.Note{ID: "n2", Org: "north", Patient: "pn1", Author: "dr-north", Role: store.RoleClinician, Text: "better", Created: t0.Add(time.Hour)}))
	must(in.st.SetUserContact(ctx, "dr-north", "mailto:dr.north@example.org"))
	must(in.st.CreateCareTeam(ctx, store.CareTeam{ID: "team-n", Org: "north", Name: "Ward 3", Created: t0}))
	must(in.st.SetCareTeamMember(ctx, "team-n", "dr-north", true))
	must(in.st.SetCareTeamPatient(ctx, "team-n", "pn1", true))
	must(in.st.CreateConsent(ctx, store.Consent{ID: "c1", Org: "north", Patient: "pn1", Grantee: "carer", Scope: store.ConsentRead, Start: t0, Created: t0}))
	must(in.st.CreateConsent(ctx, store.Consent{ID: "c2", Org: "north", Patient: "pn1", Grantee: "carer", Scope: store.ConsentReadAlarms,
		Start: t0, End: t0.Add(24 * time.Hour), Created: t0.Add(time.Second)}))
	must(in.st.RevokeConsent(ctx, "c2", t0.Add(time.Hour)))
	must(in.st.CreateBreakGlass(ctx, store.BreakGlass{ID: "g1", Org: "south", User: "dr-south", Patient: "ps1", Reason: "unconscious", Start: t0, Expires: t0.Add(time.Hour)}))
	must(in.st.CreateOAuthClient(ctx, store.OAuthClient{ID: "ehr", Name: "EHR", Org: "north", Role: store.RoleIntegration,
		Scope: "system/Observation.read", JWKS: []byte(`{"keys":[]}`), Created: t0}))
	must(in.st.PutToken(ctx, store.Token{Hash: bytes.Repeat([]byte{1}, 32), Role: store.RoleAdmin, Subject: "bootstrap", Created: t0}))
	must(in.st.PutToken(ctx, store.Token{Hash: bytes.Repeat([]byte{2}, 32), Role: store.RoleIntegration, Subject: "ehr", Org: "north",
		Created: t0, Expires: t0.Add(time.Hour), Scopes: []string{"system/Observation.read"}, Client: "ehr"}))
	must(in.st.UseJTI(ctx, "ehr", "live", t0.Add(5*time.Minute), t0))
	must(in.st.UseJTI(ctx, "ehr", "expired", t0.Add(time.Minute), t0))
	clock := t0
	log := audit.New(in.st, func() time.Time { clock = clock.Add(time.Second); return clock })
	for _, r := range []audit.Record{
		{Action: "login", Subtype: "login", Subject: "dr-north", Role: "clinician", Org: "north", Source: "192.0.2.1", Entity: "/login"},
		{Action: "read", Subtype: "read", Subject: "dr-north", Role: "clinician", Org: "north", Source: "192.0.2.1", Patients: []string{"pn1"}, Entity: "Patient/pn1"},
		{Action: "read", Subtype: "read", Subject: "dr-south", Role: "clinician", Org: "south", Source: "192.0.2.2", Patients: []string{"ps1"},
			Entity: "Patient/ps1", Query: "_summary=true", Purpose: "BTG"},
	} {
		if _, err := log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	st, err := Export(ctx, in.st, in.al, &buf, Options{Now: t0.Add(2 * time.Minute), SealKeyID: "0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), st, in
}

func TestRoundTripAccessOAuthPeopleAudit(t *testing.T) {
	ctx := context.Background()
	file, exported, src := modelExport(t)
	want := Stats{Patients: 2, Devices: 1, Users: 5, Tokens: 2, Orgs: 3, CareTeams: 1, Consents: 2, BreakGlass: 1,
		OAuthClients: 1, JTIs: 1, SecondFactors: 2, SignInFailures: 1, AuditRecords: 3, DeviceCAs: 1, DeviceCerts: 2, Notes: 2}
	if exported != want {
		t.Fatalf("exported %+v, want %+v", exported, want)
	}
	dst := newInstallation(t)
	imported, err := Import(ctx, bytes.NewReader(file), dst.st, dst.al, ImportOptions{SealKeyID: "0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	if imported != exported {
		t.Fatalf("imported %+v, exported %+v", imported, exported)
	}
	same := func(what string, get func(in installation) (any, error)) {
		t.Helper()
		a, err := get(src)
		if err != nil {
			t.Fatalf("%s of the source: %v", what, err)
		}
		b, err := get(dst)
		if err != nil {
			t.Fatalf("%s after import: %v", what, err)
		}
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("%s differ after import (-source +imported):\n%s", what, diff)
		}
	}
	same("organisations", func(in installation) (any, error) { return in.st.Orgs(ctx) })
	same("users", func(in installation) (any, error) { return in.st.Users(ctx) })
	for _, u := range []string{"dr-north", "dr-south", "carer"} {
		same("second factor of "+u, func(in installation) (any, error) { return in.st.UserTOTP(ctx, u) })
	}
	same("contact of dr-north", func(in installation) (any, error) { return in.st.UserContact(ctx, "dr-north") })
	same("device CAs", func(in installation) (any, error) { return in.st.DeviceCAs(ctx) })
	same("device certificates", func(in installation) (any, error) { return in.st.DeviceCerts(ctx, "dn1") })
	same("notes", func(in installation) (any, error) { return in.st.Notes(ctx, "pn1", 0) })
	same("sign-in failures", func(in installation) (any, error) { return in.st.AllSignInFailures(ctx) })
	same("care teams", func(in installation) (any, error) { return in.st.CareTeams(ctx, "north") })
	same("consents", func(in installation) (any, error) { return in.st.Consents(ctx, "north", "") })
	same("break-glass grants", func(in installation) (any, error) { return in.st.BreakGlassGrants(ctx, "south", 0) })
	same("OAuth clients", func(in installation) (any, error) { return in.st.OAuthClients(ctx, "") })
	same("tokens", func(in installation) (any, error) { return in.st.Tokens(ctx) })
	same("audit records", func(in installation) (any, error) { return in.st.AuditEntries(ctx, store.AuditQuery{}) })
	same("audit head", func(in installation) (any, error) { return in.st.AuditHead(ctx) })
	same("north's patients", func(in installation) (any, error) {
		ps, _, err := in.st.SearchPatients(ctx, store.PatientFilter{Org: "north"})
		ids := make([]string, len(ps))
		for i, p := range ps {
			ids[i] = p.ID // Updated is the import's time: the registry has no older one to set
		}
		return ids, err
	})
	same("dr-north's team patients", func(in installation) (any, error) { return in.st.TeamPatients(ctx, "dr-north") })

	jtis, err := dst.st.JTIs(ctx, t0.Add(2*time.Minute))
	if err != nil || len(jtis) != 1 || jtis[0].JTI != "live" {
		t.Errorf("assertion ids after import: %v (%v), want only the live one", jtis, err)
	}
	if err := dst.st.UseJTI(ctx, "ehr", "live", t0.Add(5*time.Minute), t0.Add(3*time.Minute)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("replaying an assertion used before the move: %v, want ErrConflict", err)
	}
	res, err := audit.Verify(ctx, dst.st)
	if err != nil || res.Problem != nil || res.Count != 3 {
		t.Fatalf("audit verify after import: %+v, %v", res, err)
	}
	next, err := audit.New(dst.st, nil).Append(ctx, audit.Record{Action: "read", Subject: "admin", Entity: "/api/v1/orgs"})
	if err != nil || next.Seq != 4 {
		t.Fatalf("append after import: seq %d, %v; want 4", next.Seq, err)
	}
	if res, err := audit.Verify(ctx, dst.st); err != nil || res.Problem != nil || res.Count != 4 {
		t.Fatalf("audit verify after the next append: %+v, %v", res, err)
	}
}

// TestImportVersion1 loads a file written before organisations existed
// (testdata/v1.jsonl): everything lands in the default organisation.
func TestImportVersion1(t *testing.T) {
	ctx := context.Background()
	plain, err := os.ReadFile("testdata/v1.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	in := newInstallation(t)
	st, err := Import(ctx, bytes.NewReader(gzipped(plain)), in.st, in.al, ImportOptions{SealKeyID: "any"})
	if err != nil {
		t.Fatal(err)
	}
	if st != (Stats{Patients: 1, Devices: 1, Users: 1, Tokens: 1}) {
		t.Fatalf("imported %+v", st)
	}
	p, err := in.st.Patient(ctx, "p1")
	if err != nil || p.Org != store.DefaultOrg {
		t.Errorf("patient after import: org %q (%v), want %q", p.Org, err, store.DefaultOrg)
	}
	d, err := in.st.Device(ctx, "d1")
	if err != nil || d.Org != store.DefaultOrg || d.Patient != "p1" {
		t.Errorf("device after import: %+v (%v)", d, err)
	}
	u, err := in.st.User(ctx, "admin")
	if err != nil || u.Org != store.DefaultOrg {
		t.Errorf("user after import: org %q (%v)", u.Org, err)
	}
	tok, err := in.st.TokenByHash(ctx, func() []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}())
	if err != nil || tok.Org != store.DefaultOrg || !tok.Expires.IsZero() || tok.Scopes != nil {
		t.Errorf("token after import: %+v (%v)", tok, err)
	}
	orgs, err := in.st.Orgs(ctx)
	if err != nil || len(orgs) != 1 || orgs[0].ID != store.DefaultOrg {
		t.Errorf("organisations after a version 1 import: %v (%v)", orgs, err)
	}
}

func TestImportRefusals(t *testing.T) {
	ctx := context.Background()
	file, _, _ := modelExport(t)
	dropAudit2 := rewrite(t, file, func(kind string, data []byte) []byte {
		if kind == "audit" && strings.Contains(string(data), `"Seq":2,`) {
			return nil
		}
		return data
	})
	shortHead := rewrite(t, file, func(kind string, data []byte) []byte {
		if kind == "audit" && strings.Contains(string(data), `"Seq":3,`) {
			return nil
		}
		if kind == "end" {
			return bytes.Replace(data, []byte(`"audit_records":3`), []byte(`"audit_records":2`), 1)
		}
		return data
	})
	for _, tt := range []struct {
		name    string
		file    []byte
		opts    ImportOptions
		prepare func(in installation) error
		want    string
	}{
		{name: "another seal key", file: file, opts: ImportOptions{SealKeyID: "fedcba9876543210"}, want: "copy web-session.key"},
		{name: "a gap in the audit trail", file: dropAudit2, want: "audit record 3 follows record 1"},
		{name: "a truncated audit trail", file: shortHead, want: "its head names record 3"},
		{name: "target has a nurse", file: file, want: "1 users", prepare: func(in installation) error {
			return in.st.CreateUser(ctx, store.User{ID: "n", Role: store.RoleNurse, PasswordHash: "x"})
		}},
		{name: "target has an organisation", file: file, want: "1 organisations", prepare: func(in installation) error {
			return in.st.CreateOrg(ctx, store.Organisation{ID: "x", Name: "X"})
		}},
		{name: "target has an audit record", file: file, want: "1 audit records", prepare: func(in installation) error {
			_, err := audit.New(in.st, nil).Append(ctx, audit.Record{Action: "read", Subject: "x"})
			return err
		}},
		{name: "target has an OAuth client", file: file, want: "1 OAuth clients", prepare: func(in installation) error {
			return in.st.CreateOAuthClient(ctx, store.OAuthClient{ID: "c", JWKS: []byte(`{"keys":[]}`)})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := newInstallation(t)
			if tt.prepare != nil {
				if err := tt.prepare(in); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Import(ctx, bytes.NewReader(tt.file), in.st, in.al, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Import: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	for _, tt := range []struct {
		line, want string
	}{
		{`{"format":"tend-export","version":1,"created":"2026-01-05T10:00:00Z"}`, ""},
		{`{"format":"tend-export","version":2,"created":"2026-01-05T10:00:00Z","seal_key_id":"00ff"}`, ""},
		{`{"format":"tend-export","version":3}`, "version 3 was written by a newer tend; this tend reads versions 1 to 2"},
		{`{"format":"tend-export","version":-1}`, "not a version any tend wrote"},
		{`{"format":"tend-export"}`, "not a version any tend wrote"},
		{`{"format":"something-else","version":1}`, "not a Tend export"},
		{`[1,2]`, "not a Tend export"},
	} {
		h, err := ParseHeader([]byte(tt.line))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.line, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want an error containing %q", tt.line, err, tt.want)
		case tt.want == "" && (h.Version < MinVersion || h.Version > Version):
			t.Errorf("%s: accepted version %d", tt.line, h.Version)
		}
	}
}

func TestSealKeyID(t *testing.T) {
	a, b := SealKeyID(bytes.Repeat([]byte{1}, 32)), SealKeyID(bytes.Repeat([]byte{2}, 32))
	if a == b || len(a) != 16 || a != SealKeyID(bytes.Repeat([]byte{1}, 32)) {
		t.Fatalf("SealKeyID: %q, %q", a, b)
	}
	if strings.Contains(a, "0101") {
		t.Fatalf("SealKeyID shows the key: %q", a)
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte(`{"format":"tend-export","version":2,"created":"2026-01-05T10:00:00Z","seal_key_id":"00ff"}`))
	f.Add([]byte(`{"format":"tend-export","version":1}`))
	f.Add([]byte(`{"format":"tend-export","version":99}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err == nil && (h.Format != Format || h.Version < MinVersion || h.Version > Version) {
			t.Fatalf("accepted %+v", h)
		}
	})
}

func gzipped(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

// rewrite passes every record of an export through edit (nil drops it).
func rewrite(t *testing.T, file []byte, edit func(kind string, data []byte) []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(plain))
	sc.Buffer(nil, maxLine)
	for first := true; sc.Scan(); first = false {
		if first {
			out.Write(sc.Bytes())
			out.WriteByte('\n')
			continue
		}
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		data := edit(l.Kind, l.Data)
		if data == nil {
			continue
		}
		b, _ := json.Marshal(line{Kind: l.Kind, Data: data})
		out.Write(append(b, '\n'))
	}
	return gzipped(out.Bytes())
}
