package deviceca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

var t0 = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func mustKey(t *testing.T) *Key {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return &k
}

func addDevice(t *testing.T, st store.Store, id, org string) {
	t.Helper()
	if err := st.CreateDevice(context.Background(), &store.Device{ID: id, Org: org, Resource: []byte(`{"resourceType":"Device"}`)}, t0); err != nil {
		t.Fatalf("create device %s: %v", id, err)
	}
}

func parsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseKey(t *testing.T) {
	k := mustKey(t)
	raw := k.b[:]
	tests := []struct {
		name, text string
		ok         bool
	}{
		{"base64", k.Encode() + "\n", true},
		{"hex", "  " + strings.ToUpper(hexOf(raw)) + "\r\n", true},
		{"raw url base64", strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(k.Encode()), "="), true},
		{"too short", "c2hvcnQ=", false},
		{"not encoded", "this is not a key at all, it is a sentence!", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey([]byte(tc.text))
			if (err == nil) != tc.ok {
				t.Fatalf("ParseKey(%q) error %v, want ok=%v", tc.text, err, tc.ok)
			}
			if tc.ok && got != *k {
				t.Fatal("parsed a different key")
			}
		})
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestSealBindsOrgAndKey(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	sealed, err := k.seal("org-a", []byte("secret key bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.open("org-a", sealed); err != nil || string(got) != "secret key bytes" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := k.open("org-b", sealed); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("opened under another organisation: %v", err)
	}
	if _, err := other.open("org-a", sealed); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("opened with another key: %v", err)
	}
	if _, err := (Key{}).seal("org-a", nil); err == nil {
		t.Fatal("the zero key sealed")
	}
}

// fixture: org "default" and org "north", each with a CA, and devices in each.
type fixture struct {
	st  *sqlite.Store
	clk *clock
	a   *Authority
	v   *Verifier
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	st := openStore(t)
	clk := &clock{t: t0}
	ctx := context.Background()
	if err := st.CreateOrg(ctx, store.Organisation{ID: "north", Name: "North", Created: t0}); err != nil {
		t.Fatal(err)
	}
	addDevice(t, st, "dev-1", "")
	addDevice(t, st, "dev-2", "")
	addDevice(t, st, "north-1", "north")
	a := &Authority{Store: st, Key: mustKey(t), Now: clk.now}
	for _, org := range []string{"", "north"} {
		if _, err := a.Init(ctx, org); err != nil {
			t.Fatalf("init %q: %v", org, err)
		}
	}
	return fixture{st: st, clk: clk, a: a, v: NewVerifier(st, clk.now)}
}

func TestInit(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.a.Init(ctx, "default"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CA: %v, want ErrConflict", err)
	}
	if _, err := f.a.Init(ctx, "nowhere"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CA of an unknown organisation: %v, want ErrNotFound", err)
	}
	if _, err := (&Authority{Store: f.st}).Init(ctx, "north"); !errors.Is(err, ErrNoKey) {
		t.Fatalf("init without key: %v", err)
	}
	ca, err := f.a.CA(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA || ca.NotAfter.Sub(t0) < 9*365*24*time.Hour {
		t.Fatalf("CA: IsCA %v, %v, not after %v", ca.IsCA, ca.PublicKeyAlgorithm, ca.NotAfter)
	}
	if n := len(f.v.Authorities(ctx)); n != 2 {
		t.Fatalf("%d authorities, want 2", n)
	}
}

func TestIssue(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	is, err := f.a.Issue(ctx, "dev-1", 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := parsePEM(t, is.Cert)
	if c.Subject.CommonName != "dev-1" || len(c.URIs) != 1 || c.URIs[0].String() != "urn:tend:device:dev-1" {
		t.Fatalf("subject %q, URIs %v", c.Subject.CommonName, c.URIs)
	}
	if c.SerialNumber.BitLen() < 64 || serialText(c.SerialNumber) != is.Serial {
		t.Fatalf("serial %x (%d bits), recorded %s", c.SerialNumber, c.SerialNumber.BitLen(), is.Serial)
	}
	if !c.NotAfter.Equal(t0.Add(30 * 24 * time.Hour)) {
		t.Fatalf("not after %v", c.NotAfter)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("ext key usage %v", c.ExtKeyUsage)
	}
	if blk, _ := pem.Decode(is.Key); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatal("no PKCS#8 key")
	}
	rec, err := f.st.DeviceCert(ctx, is.Serial)
	if err != nil || rec.Device != "dev-1" || rec.Org != store.DefaultOrg || !rec.NotAfter.Equal(c.NotAfter) {
		t.Fatalf("record %+v, %v", rec, err)
	}
	for _, tc := range []struct {
		name   string
		a      *Authority
		device string
		want   error
	}{
		{"unknown device", f.a, "nope", store.ErrNotFound},
		{"invalid id", f.a, "a/b", store.ErrNotFound},
		{"no key", &Authority{Store: f.st, Now: f.clk.now}, "dev-1", ErrNoKey},
		{"wrong key", &Authority{Store: f.st, Key: mustKey(t), Now: f.clk.now}, "dev-1", ErrWrongKey},
	} {
		if _, err := tc.a.Issue(ctx, tc.device, 0); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// An organisation without a CA cannot issue.
	if err := f.st.CreateOrg(ctx, store.Organisation{ID: "south", Created: t0}); err != nil {
		t.Fatal(err)
	}
	addDevice(t, f.st, "south-1", "south")
	if _, err := f.a.Issue(ctx, "south-1", 0); !errors.Is(err, ErrNoCA) {
		t.Fatalf("issue without CA: %v", err)
	}
}

// forge signs a certificate with org's CA for any device id and records
// it, as a holder of that organisation's CA key could.
func forge(t *testing.T, f fixture, caOrg, device, uri, cn string, record bool) []*x509.Certificate {
	t.Helper()
	ctx := context.Background()
	rec, err := f.st.DeviceCA(ctx, caOrg)
	if err != nil {
		t.Fatal(err)
	}
	caCert, caKey, err := OpenCA(rec, *f.a.Key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, serial, err := IssueCertificate(caCert, caKey, device, t0.Add(-time.Minute), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c := parsePEM(t, certPEM)
	if uri != "" || cn != "" { // re-sign with a hand-made subject
		tmpl := *c
		tmpl.RawSubject = nil
		tmpl.Subject.CommonName = cn
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
		der, err := x509.CreateCertificate(nil, &tmpl, caCert, c.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		if c, err = x509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
	}
	if record {
		if err := f.st.AddDeviceCert(ctx, store.DeviceCert{Serial: serialText(serial), Device: device, Org: store.OrgOrDefault(orgOf(t, f, device)),
			Issued: t0, NotAfter: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	return []*x509.Certificate{c}
}

func orgOf(t *testing.T, f fixture, device string) string {
	d, err := f.st.Device(context.Background(), device)
	if err != nil {
		return ""
	}
	return d.Org
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	good, err := f.a.Issue(ctx, "dev-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := f.a.Issue(ctx, "dev-2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.RevokeDevice(ctx, "dev-2"); err != nil {
		t.Fatal(err)
	}
	north, err := f.a.Issue(ctx, "north-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	one := func(b []byte) []*x509.Certificate { return []*x509.Certificate{parsePEM(t, b)} }

	tests := []struct {
		name  string
		chain []*x509.Certificate
		at    time.Time
		want  string // "" ok, else part of the refusal
	}{
		{"good", one(good.Cert), t0, ""},
		{"good in another organisation", one(north.Cert), t0, ""},
		{"expired", one(good.Cert), t0.Add(2 * time.Hour), "expired"},
		{"not yet valid", one(good.Cert), t0.Add(-time.Hour), "expired or is not yet valid"},
		{"revoked", one(revoked.Cert), t0, "revoked"},
		{"another organisation's CA", forge(t, f, "north", "dev-1", "", "", true), t0, "unknown authority"},
		{"never recorded", forge(t, f, "default", "dev-1", "", "", false), t0, "never issued"},
		{"unknown device", forge(t, f, "default", "ghost", "", "", false), t0, "no device"},
		{"wildcard id", forge(t, f, "default", "dev-1", "urn:tend:device:dev+1", "", false), t0, "not valid"},
		{"separator id", forge(t, f, "default", "dev-1", "urn:tend:device:a/b", "", false), t0, "not valid"},
		{"common name differs", forge(t, f, "default", "dev-1", "urn:tend:device:dev-1", "dev-2", false), t0, "common name"},
		{"no certificate", nil, t0, "no certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.clk.t = tc.at
			id, err := f.v.Verify(ctx, tc.chain)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if id.Device != tc.chain[0].Subject.CommonName || id.Serial != serialText(tc.chain[0].SerialNumber) {
					t.Fatalf("identity %+v", id)
				}
				return
			}
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrUntrusted with %q", err, tc.want)
			}
		})
	}
	f.clk.t = t0

	// A certificate signed for one device and recorded for another is refused.
	chain := forge(t, f, "default", "dev-1", "", "", false)
	if err := f.st.AddDeviceCert(ctx, store.DeviceCert{Serial: serialText(chain[0].SerialNumber), Device: "dev-2", Org: "default", Issued: t0, NotAfter: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(ctx, chain); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("certificate recorded for another device: %v", err)
	}

	// Revoking by serial takes effect at the next verification.
	if _, err := f.a.RevokeSerial(ctx, strings.ToUpper(good.Serial)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(ctx, one(good.Cert)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("verified after revocation: %v", err)
	}

	// An organisation without a CA verifies nothing.
	if err := f.st.CreateOrg(ctx, store.Organisation{ID: "south", Created: t0}); err != nil {
		t.Fatal(err)
	}
	addDevice(t, f.st, "south-1", "south")
	if _, err := f.v.Verify(ctx, forge(t, f, "default", "south-1", "", "", true)); err == nil || !strings.Contains(err.Error(), "no device CA") {
		t.Fatalf("device of an organisation without CA: %v", err)
	}
}

func TestClaimsAndDeviceID(t *testing.T) {
	f := newFixture(t)
	is, err := f.a.Issue(context.Background(), "dev-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := parsePEM(t, is.Cert)
	if !f.v.Claims(c) || f.v.DeviceID(c) != "dev-1" {
		t.Fatalf("claims %v, id %q", f.v.Claims(c), f.v.DeviceID(c))
	}
	plain := &x509.Certificate{}
	if f.v.Claims(plain) || f.v.DeviceID(plain) != "" {
		t.Fatal("a certificate without device URI is claimed")
	}
	bad := forge(t, f, "default", "dev-1", "URN:TEND:DEVICE:x#y", "", false)[0]
	if !f.v.Claims(bad) || f.v.DeviceID(bad) != "" {
		t.Fatal("a malformed device URI must be claimed (and then refused), not passed to another CA")
	}
}

func TestParseSerial(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0A:1b:ff", "a1bff"},
		{"0x00ff", "ff"},
		{" DEADBEEF\n", "deadbeef"},
		{"", ""},
		{"0", ""},
		{"-5", ""},
		{"xyz", ""},
		{strings.Repeat("f", 41), ""},
	}
	for _, tc := range tests {
		got, err := ParseSerial(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseSerial(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSerial(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

type revStore struct{ certs []store.DeviceCert }

func (r *revStore) RevokedDeviceCertsSince(_ context.Context, since time.Time) ([]store.DeviceCert, error) {
	var out []store.DeviceCert
	for _, c := range r.certs {
		if !c.Revoked.Before(since) {
			out = append(out, c)
		}
	}
	return out, nil
}

func TestWatcher(t *testing.T) {
	clk := &clock{t: t0}
	rs := &revStore{certs: []store.DeviceCert{{Serial: "1", Device: "old", Revoked: t0.Add(-30 * time.Second)}}}
	var kicked []string
	w := &Watcher{Store: rs, Now: clk.now, Logger: slog.New(slog.DiscardHandler), Kick: func(d string) int { kicked = append(kicked, d); return 1 }}
	ctx := context.Background()
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance time.Duration
		revoke  []store.DeviceCert
		want    []string
	}{
		{5 * time.Second, nil, nil}, // revoked before the node looked: its handshakes were checked
		// Another machine revoked, its clock 20 s behind.
		{5 * time.Second, []store.DeviceCert{{Serial: "2", Device: "d2", Revoked: t0.Add(-10 * time.Second)}}, []string{"d2"}},
		{5 * time.Second, nil, nil}, // each revocation once
		{5 * time.Second, []store.DeviceCert{{Serial: "3", Device: "d3", Revoked: t0.Add(14 * time.Second)},
			{Serial: "4", Device: "d4", Revoked: t0.Add(15 * time.Second)}}, []string{"d3", "d4"}},
		{2 * time.Minute, nil, nil},
	}
	for i, s := range steps {
		clk.t = clk.t.Add(s.advance)
		rs.certs = append(rs.certs, s.revoke...)
		kicked = nil
		n, err := w.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(kicked, ",") != strings.Join(s.want, ",") || n != len(s.want) {
			t.Fatalf("step %d: kicked %v (%d), want %v", i, kicked, n, s.want)
		}
	}
	if len(w.seen) != 0 {
		t.Fatalf("seen not pruned: %v", w.seen)
	}
}

func FuzzParseDeviceURI(f *testing.F) {
	for _, s := range []string{"urn:tend:device:dev-1", "URN:Tend:Device:x", "urn:tend:device:", "urn:tend:device:a+b", "urn:tend:device:#", "urn:tend:devic"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseDeviceURI(s)
		if err != nil {
			return
		}
		if !store.ValidDeviceID(id) || strings.ContainsAny(id, "+#/*>. ") {
			t.Fatalf("ParseDeviceURI(%q) = %q: not a safe device id", s, id)
		}
		if again, err := ParseDeviceURI(DeviceURI(id)); err != nil || again != id {
			t.Fatalf("round trip of %q: %q, %v", id, again, err)
		}
	})
}

func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"0a:1b", "0xff", "DEADBEEF", "", "-1", "+7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSerial(s)
		if err != nil {
			return
		}
		if again, err := ParseSerial(got); err != nil || again != got {
			t.Fatalf("ParseSerial(%q) = %q, not canonical: %q, %v", s, got, again, err)
		}
		if strings.ToLower(got) != got || strings.HasPrefix(got, "0") {
			t.Fatalf("ParseSerial(%q) = %q: not lowercase without leading zeros", s, got)
		}
	})
}

func FuzzParseKey(f *testing.F) {
	f.Add("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	f.Add(strings.Repeat("ab", 32))
	f.Add("short")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey([]byte(s))
		if err != nil {
			return
		}
		if again, err := ParseKey([]byte(k.Encode())); err != nil || again != k {
			t.Fatalf("round trip of a key parsed from %q failed: %v", s, err)
		}
	})
}
