package node_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/cli"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/postgres"
	"github.com/tendhealth/tend/internal/store/postgres/pgtest"
	"github.com/tendhealth/tend/internal/totp"
)

// TestExportImport moves an embedded installation killed with SIGKILL to
// PostgreSQL: every acknowledged reading, the registry with its binding
// history, device credentials, the admin token, dead letters, alarms with
// their history, rule overrides and webhooks arrive, and a node on the new
// store carries on with them.
func TestExportImport(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a server; skipped with -short")
	}
	pgURL := pgtest.Schema(t, postgres.Redact)
	dir := t.TempDir()
	cmd, addrs := serveChild(t, dir)
	c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
	a, b := enrol(c, "exp-a"), enrol(c, "exp-b")
	dev := api{t: t, base: c.base, token: a.secret}
	base := time.Now().Add(time.Second).Truncate(time.Second)
	time.Sleep(time.Until(base))
	const batches, perBatch = 20, 50
	for i := range batches {
		dev.must(202, "POST", "/api/v1/devices/"+a.device+"/obs", "application/senml+json", senmlHR(base.Add(time.Duration(i)*time.Millisecond), perBatch, 70))
	}
	dev.must(202, "POST", "/api/v1/devices/"+a.device+"/obs", "application/senml+json", []byte(`[{"n":"fall","v":1}]`))
	dev.do("POST", "/api/v1/devices/"+a.device+"/obs", "application/senml+json", []byte(`[{"n":"no-such-code","v":1}]`)) // a dead letter
	c.must(200, "PUT", "/api/v1/patients/"+a.patient+"/rules?reason=export+test", "application/json",
		[]byte(`{"setting":"home","rules":[]}`))
	c.must(201, "POST", "/api/v1/webhooks", "application/json", []byte(`{"url":"http://127.0.0.1:9/alarms"}`))
	// Move b's device to a: a binding history with two entries.
	c.must(200, "PUT", "/fhir/Device/"+b.device, "application/fhir+json", []byte(fmt.Sprintf(
		`{"resourceType":"Device","id":"%s","identifier":[{"system":"urn:test","value":"dev-exp-b"}],"patient":{"reference":"Patient/%s"}}`, b.device, a.patient)))
	waitFor(t, "the fall alarm", func() bool {
		m := c.must(200, "GET", "/api/v1/alarms?patient="+a.patient, "", nil)
		return len(m["alarms"].([]any)) == 1
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var file bytes.Buffer
	exported, err := node.Export(context.Background(), node.Config{DataDir: dir, Logger: quiet}, &file)
	if err != nil {
		t.Fatal(err)
	}
	if exported.Readings < batches*perBatch+1 || exported.Patients != 2 || exported.Devices != 2 || exported.Alarms != 1 ||
		exported.DeadLetters != 1 || exported.Webhooks != 1 || exported.Documents != 1 || exported.Tokens != 1 {
		t.Fatalf("exported %+v", exported)
	}
	imported, err := node.Import(context.Background(), node.Config{StoreURL: pgURL, Logger: quiet}, bytes.NewReader(file.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if imported != exported {
		t.Fatalf("imported %+v, exported %+v", imported, exported)
	}
	if _, err := node.Import(context.Background(), node.Config{StoreURL: pgURL, Logger: quiet}, bytes.NewReader(file.Bytes())); err == nil ||
		!strings.Contains(err.Error(), "not empty") {
		t.Fatalf("second import into the same store: %v, want a refusal", err)
	}

	// A node on the new store: same data, same credentials.
	pgDir := t.TempDir()
	n := node.New(node.Config{DataDir: pgDir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "off", MLLPAddr: "off", StoreURL: pgURL,
		Logger: quiet, Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	pc := api{t: t, base: "http://" + readListen(t, pgDir).HTTP, token: testToken} // the token came along
	if got := countObs(pc, a.patient, "8867-4"); got != batches*perBatch {
		t.Errorf("heart rates after import: %d, want every acknowledged one (%d)", got, batches*perBatch)
	}
	m := pc.must(200, "GET", "/api/v1/alarms?patient="+a.patient, "", nil)
	as := m["alarms"].([]any)
	if len(as) != 1 {
		t.Fatalf("alarms after import: %v", as)
	}
	got := pc.must(200, "GET", "/api/v1/alarms/"+as[0].(map[string]any)["id"].(string), "", nil)
	if h, _ := got["history"].([]any); len(h) == 0 {
		t.Errorf("alarm history lost: %v", got)
	}
	rules := pc.must(200, "GET", "/api/v1/patients/"+a.patient+"/rules/history", "", nil)
	if !strings.Contains(fmt.Sprint(rules), "export test") {
		t.Errorf("rule override history lost: %v", rules)
	}
	// b's device still authenticates and now feeds patient a.
	before := countObs(pc, a.patient, "")
	pdev := api{t: t, base: pc.base, token: b.secret}
	pdev.must(202, "POST", "/api/v1/devices/"+b.device+"/obs", "application/senml+json", []byte(`[{"n":"8867-4","u":"/min","v":88}]`))
	if got := waitObsFor(pc, a.patient, before+1, 20*time.Second); got != before+1 {
		t.Errorf("reading from the re-bound device not stored for its new patient: %d", got)
	}
}

// TestExportImportAccessModel moves an embedded installation with two
// organisations, a care team, a consent, a break-glass grant, an OAuth
// client with a live token, a user with a second factor and an audit trail
// to PostgreSQL; on the new store a clinician still sees exactly their
// team's patients, the client gets tokens with its old key, the user signs
// in with a code (not with one already used), and the audit chain verifies
// and continues.
func TestExportImportAccessModel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two nodes and PostgreSQL; skipped with -short")
	}
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pgURL := pgtest.Schema(t, postgres.Redact)
	dir := t.TempDir()
	src := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "off", MLLPAddr: "off",
		BootstrapToken: testToken, Logger: quiet, Console: io.Discard})
	if err := src.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srcOpen := true
	defer func() {
		if srcOpen {
			src.Close()
		}
	}()
	st := src.Store()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	must(st.CreateOrg(ctx, store.Organisation{ID: "north", Name: "North Hospital", PrivacyOfficer: "dpo-north", Created: now}))
	must(st.CreateOrg(ctx, store.Organisation{ID: "south", Name: "South Clinic", Created: now}))
	const pw = "correct horse battery staple"
	for _, u := range []store.User{
		{ID: "dr-north", Name: "Dr North", Role: store.RoleClinician, Org: "north"},
		{ID: "dr-south", Name: "Dr South", Role: store.RoleClinician, Org: "south"},
		{ID: "carer-north", Name: "Carer", Role: store.RoleCaregiver, Org: "north"},
	} {
		u.PasswordHash, u.Created = auth.HashPassword(pw), now
		must(st.CreateUser(ctx, u))
	}
	for id, org := range map[string]string{"pn1": "north", "pn2": "north", "ps1": "south"} {
		must(st.CreatePatient(ctx, &store.Patient{ID: id, Org: org, Resource: []byte(`{"resourceType":"Patient","id":"` + id + `"}`)}))
	}
	must(st.CreateCareTeam(ctx, store.CareTeam{ID: "ward-n", Org: "north", Name: "Ward North", Created: now}))
	must(st.SetCareTeamMember(ctx, "ward-n", "dr-north", true))
	must(st.SetCareTeamPatient(ctx, "ward-n", "pn1", true))
	must(st.CreateConsent(ctx, store.Consent{ID: "consent-1", Org: "north", Patient: "pn2", Grantee: "carer-north", Scope: store.ConsentRead, Start: now, Created: now}))
	must(st.CreateBreakGlass(ctx, store.BreakGlass{ID: "btg-1", Org: "south", User: "dr-south", Patient: "ps1", Reason: "unconscious on arrival",
		Start: now, Expires: now.Add(time.Hour)}))
	// dr-north's authenticator, sealed under the data directory's key.
	key, err := os.ReadFile(filepath.Join(dir, "web-session.key"))
	must(err)
	sealer, err := totp.DerivedSealer(key)
	must(err)
	secret := []byte("12345678901234567890")
	must(st.SetUserTOTP(ctx, "dr-north", sealer.Seal("dr-north", secret), true))

	c := api{t: t, base: "http://" + readListen(t, dir).HTTP, token: testToken}
	signIn := func(c api, user, code string) (int, string) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"username": user, "password": pw, "totp": code})
		status, b := api{t: t, base: c.base}.do("POST", "/api/v1/auth/token", "application/json", body)
		var r struct{ Token string }
		json.Unmarshal(b, &r)
		return status, r.Token
	}
	usedCode := totp.Generate(secret, time.Now())
	if status, _ := signIn(c, "dr-north", usedCode); status != 201 {
		t.Fatalf("sign-in with a code before the export: %d", status)
	}
	// The OAuth client and a token it holds across the move.
	ck, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	jwk, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ck.PublicKey, KeyID: "k1", Algorithm: "ES384", Use: "sig"}}})
	must(err)
	client := c.must(201, "POST", "/api/v1/clients", "application/json",
		[]byte(`{"name":"Lab EHR","scope":"system/Patient.rs system/Observation.rs","jwks":`+string(jwk)+`}`))["client_id"].(string)
	clientToken := func(base string) (int, string) {
		t.Helper()
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: ck}, (&jose.SignerOptions{}).WithHeader("kid", "k1").WithType("JWT"))
		must(err)
		id := make([]byte, 16)
		rand.Read(id)
		raw, err := jwt.Signed(s).Claims(jwt.Claims{Issuer: client, Subject: client, Audience: jwt.Audience{base + "/auth/token"},
			Expiry: jwt.NewNumericDate(time.Now().Add(4 * time.Minute)), ID: fmt.Sprintf("%x", id)}).Serialize()
		must(err)
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {raw}}
		status, b := api{t: t, base: base}.do("POST", "/auth/token", "application/x-www-form-urlencoded", []byte(form.Encode()))
		var r struct {
			AccessToken string `json:"access_token"`
		}
		json.Unmarshal(b, &r)
		return status, r.AccessToken
	}
	status, liveToken := clientToken(c.base)
	if status != 200 || liveToken == "" {
		t.Fatalf("client token before the export: %d", status)
	}
	api{t: t, base: c.base, token: liveToken}.must(200, "GET", "/fhir/Patient", "", nil)
	srcOpen = false
	must(src.Close())

	var file bytes.Buffer
	exported, err := node.Export(ctx, node.Config{DataDir: dir, Logger: quiet}, &file)
	must(err)
	if exported.Orgs != 3 || exported.CareTeams != 1 || exported.Consents != 1 || exported.BreakGlass != 1 || exported.OAuthClients != 1 ||
		exported.SecondFactors != 1 || exported.JTIs != 1 || exported.AuditRecords < 3 || exported.Patients != 3 {
		t.Fatalf("exported %+v", exported)
	}
	// A data directory with another key is refused before anything is written.
	otherDir := t.TempDir()
	must(os.WriteFile(filepath.Join(otherDir, "web-session.key"), bytes.Repeat([]byte{7}, 32), 0o600))
	if _, err := node.Import(ctx, node.Config{DataDir: otherDir, StoreURL: pgURL, Logger: quiet}, bytes.NewReader(file.Bytes())); err == nil ||
		!strings.Contains(err.Error(), "web-session.key") {
		t.Fatalf("import next to another web-session.key: %v, want a refusal", err)
	}
	pgDir := t.TempDir()
	must(os.WriteFile(filepath.Join(pgDir, "web-session.key"), key, 0o600)) // as the README says: copy the key file
	imported, err := node.Import(ctx, node.Config{DataDir: pgDir, StoreURL: pgURL, Logger: quiet}, bytes.NewReader(file.Bytes()))
	must(err)
	if imported != exported {
		t.Fatalf("imported %+v, exported %+v", imported, exported)
	}
	var out, errOut bytes.Buffer
	if rc := cli.Run([]string{"audit", "verify", "--store", pgURL}, &out, &errOut); rc != 0 || !strings.HasPrefix(out.String(), fmt.Sprintf("OK: %d records", exported.AuditRecords)) {
		t.Fatalf("tend audit verify after import = %d: %s %s", rc, out.String(), errOut.String())
	}

	n := node.New(node.Config{DataDir: pgDir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "off", MLLPAddr: "off", StoreURL: pgURL,
		Logger: quiet, Console: io.Discard})
	must(n.Start(ctx))
	defer n.Close()
	base := "http://" + readListen(t, pgDir).HTTP

	if status, _ := signIn(api{base: base}, "dr-north", usedCode); status == 201 {
		t.Error("a code used before the export signed in again after it")
	}
	status, drNorth := signIn(api{base: base}, "dr-north", totp.Generate(secret, time.Now().Add(30*time.Second)))
	if status != 201 {
		t.Fatalf("dr-north's sign-in with a fresh code after import: %d", status)
	}
	patientIDs := func(token string) []string {
		t.Helper()
		_, b := api{t: t, base: base, token: token}.do("GET", "/fhir/Patient", "", nil)
		var bundle struct {
			Entry []struct{ Resource struct{ ID string } }
		}
		mustJSON(t, b, &bundle)
		var ids []string
		for _, e := range bundle.Entry {
			ids = append(ids, e.Resource.ID)
		}
		return ids
	}
	if ids := patientIDs(drNorth); fmt.Sprint(ids) != "[pn1]" {
		t.Errorf("dr-north sees %v after import, want exactly their team's [pn1]", ids)
	}
	status, drSouth := signIn(api{base: base}, "dr-south", "")
	if status != 201 {
		t.Fatalf("dr-south's sign-in after import: %d", status)
	}
	ds := api{t: t, base: base, token: drSouth}
	ds.must(200, "GET", "/fhir/Patient/ps1", "", nil) // the break-glass grant came along
	ds.must(404, "GET", "/fhir/Patient/pn1", "", nil) // another organisation's patient
	status, carer := signIn(api{base: base}, "carer-north", "")
	if status != 201 {
		t.Fatalf("carer's sign-in after import: %d", status)
	}
	if ids := patientIDs(carer); fmt.Sprint(ids) != "[pn2]" {
		t.Errorf("the carer sees %v after import, want the consenting [pn2]", ids)
	}
	api{t: t, base: base, token: liveToken}.must(200, "GET", "/fhir/Patient", "", nil)
	if status, tok := clientToken(base); status != 200 || tok == "" {
		t.Errorf("client token with the old key after import: %d", status)
	}

	out.Reset()
	errOut.Reset()
	if rc := cli.Run([]string{"audit", "verify", "--store", pgURL}, &out, &errOut); rc != 0 || !strings.HasPrefix(out.String(), "OK: ") {
		t.Fatalf("tend audit verify after requests on the new store = %d: %s %s", rc, out.String(), errOut.String())
	}
	var after int
	fmt.Sscanf(out.String(), "OK: %d records", &after)
	if after <= exported.AuditRecords {
		t.Errorf("audit records after requests on the new store: %d, want more than the %d imported", after, exported.AuditRecords)
	}
}
