package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/fhir"
	"github.com/tendhealth/tend/internal/notify"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

// mailbox is a real SMTP server (go-smtp) that keeps what it accepted.
type mailbox struct {
	mu   sync.Mutex
	mail []receivedMail
}

type receivedMail struct {
	to   string
	data []byte
}

type mailSession struct {
	mb *mailbox
	to string
}

func (s *mailSession) Reset()                                    { s.to = "" }
func (s *mailSession) Logout() error                             { return nil }
func (s *mailSession) Mail(string, *smtp.MailOptions) error      { return nil }
func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error { s.to = to; return nil }
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mb.mu.Lock()
	s.mb.mail = append(s.mb.mail, receivedMail{to: s.to, data: b})
	s.mb.mu.Unlock()
	return nil
}

func (mb *mailbox) received() []receivedMail {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return append([]receivedMail(nil), mb.mail...)
}

func startMailbox(t *testing.T) (string, *mailbox) {
	t.Helper()
	mb := &mailbox{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &mailSession{mb: mb}, nil }))
	srv.Domain = "mx.test"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), mb
}

// mailText is the decoded body of an e-mail.
func mailText(t *testing.T, raw []byte) string {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// bgFixture is the API behind the audit middleware (as a node serves it),
// with the alarm service and an outbox dispatcher that e-mails a real
// SMTP server.
type bgFixture struct {
	srv   *httptest.Server
	st    store.Store
	db    *alarmdb.DB
	disp  *alarm.Dispatcher
	mb    *mailbox
	mu    sync.Mutex
	now   time.Time
	token map[string]string // user -> token
}

func (f *bgFixture) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }

func newBGFixture(t *testing.T) *bgFixture {
	t.Helper()
	ctx := context.Background()
	f := &bgFixture{now: time.Date(2026, 7, 1, 3, 0, 0, 0, time.UTC), token: map[string]string{}}
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := alarmdb.Open(filepath.Join(t.TempDir(), "alarms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.st, f.db = st, db
	addr, mb := startMailbox(t)
	f.mb = mb
	profiles := &alarm.Profiles{Store: db, Now: f.clock}
	svc := alarm.NewService(alarm.Config{Store: db, Escalation: profiles.Escalation, Now: f.clock})
	f.disp = &alarm.Dispatcher{Store: db, Service: svc, Now: f.clock,
		Sender: notify.Mux{alarm.RecipientEmail: &notify.SMTP{Addr: addr, From: "tend@tend.example", Now: f.clock}},
		Resolve: func(_ context.Context, r string) (notify.Recipient, error) {
			kind, a, _ := strings.Cut(r, ":")
			return notify.Recipient{Kind: kind, Address: a}, nil
		}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fh := fhir.NewHandler(fhir.Config{Store: st, Now: f.clock, Logger: log, Access: access.New(st, f.clock)})
	h := New(Config{Store: st, FHIR: fh, Ready: func() error { return nil }, Now: f.clock, Logger: log,
		Alarms: svc, AlarmStore: db, Profiles: profiles, PublicURL: "https://tend.example.org/"})
	mw := &audit.Middleware{Log: audit.New(st, f.clock), Classify: audit.Classify, Logger: log, Purpose: audit.BreakGlassPurpose(st, f.clock)}
	f.srv = httptest.NewServer(mw.Wrap(h))
	t.Cleanup(f.srv.Close)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []store.Organisation{{ID: "east", Name: "East", PrivacyOfficer: "east-po"}, {ID: "west", Name: "West"}} {
		must(st.CreateOrg(ctx, o))
		for _, u := range []struct {
			id   string
			role store.Role
		}{{"-po", store.RoleAuditor}, {"-admin", store.RoleAdmin}, {"-admin2", store.RoleAdmin}, {"-nurse", store.RoleNurse}} {
			id := o.ID + u.id
			must(st.CreateUser(ctx, store.User{ID: id, Name: id, Role: u.role, Org: o.ID, PasswordHash: "x"}))
			f.token[id] = "tok-" + id + "-xxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			must(st.PutToken(ctx, store.Token{Hash: auth.HashSecret(f.token[id]), Role: u.role, Subject: id, Org: o.ID}))
		}
		for _, p := range []string{"1", "2"} {
			id := "pt-" + o.ID + "-" + p
			must(st.CreatePatient(ctx, &store.Patient{ID: id, Org: o.ID, Resource: []byte(`{"resourceType":"Patient","id":"` + id + `"}`)}))
		}
	}
	return f
}

func (f *bgFixture) do(t *testing.T, method, path, user, body string, want int) []byte {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.token[user])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s as %s: %d %s, want %d", method, path, user, resp.StatusCode, b, want)
	}
	return b
}

func TestBreakGlassAlertsThePrivacyOfficer(t *testing.T) {
	f := newBGFixture(t)
	ctx := context.Background()
	// The officer's address; east's nurse cares for pt-east-1 only.
	f.do(t, "PUT", "/api/v1/users/east-po/contact", "east-admin", `{"contact":"email:privacy@east.example"}`, 200)
	f.do(t, "PUT", "/api/v1/users/west-po/contact", "east-admin", `{"contact":"email:x@west.example"}`, 404)
	f.do(t, "PUT", "/api/v1/users/east-po/contact", "east-admin", `{"contact":"webhook:wh1"}`, 403)
	f.do(t, "PUT", "/api/v1/users/east-po/contact", "east-admin", `{"contact":"email:Privacy <p@east.example>"}`, 400)
	f.do(t, "POST", "/api/v1/care-teams", "east-admin", `{"id":"ward","name":"Ward"}`, 201)
	f.do(t, "PUT", "/api/v1/care-teams/ward/members/east-nurse", "east-admin", "", 200)
	f.do(t, "PUT", "/api/v1/care-teams/ward/patients/pt-east-1", "east-admin", "", 200)
	f.do(t, "GET", "/fhir/Patient/pt-east-2", "east-nurse", "", 404)

	var g breakGlassJSON
	json.Unmarshal(f.do(t, "POST", "/api/v1/break-glass", "east-nurse", `{"patient":"pt-east-2","reason":"found collapsed in the corridor","minutes":30}`, 201), &g)
	if g.Alert == nil || g.Alert.To != "privacy_officer" || g.Alert.Recipients != 1 || g.Alert.Alarm == "" || g.Alert.Note != "" {
		t.Fatalf("alert in the answer: %+v", g.Alert)
	}
	// Exactly one e-mail, to the officer, with who, which patient, why and until when.
	if n, err := f.disp.RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("dispatch: %d %v", n, err)
	}
	if n, _ := f.disp.RunOnce(ctx); n != 0 {
		t.Errorf("a second dispatch sent %d more", n)
	}
	got := f.mb.received()
	if len(got) != 1 || got[0].to != "privacy@east.example" {
		t.Fatalf("mail %+v, want one to the privacy officer", got)
	}
	text := mailText(t, got[0].data)
	for _, want := range []string{"east-nurse", "pt-east-2", "found collapsed in the corridor", g.Expires.Format(time.RFC3339), g.ID,
		`"review": "https://tend.example.org/api/v1/break-glass"`} {
		if !strings.Contains(text, want) {
			t.Errorf("the alert does not carry %q:\n%s", want, text)
		}
	}
	ds, err := f.db.Deliveries(ctx, g.Alert.Alarm)
	if err != nil || len(ds) != 1 || ds[0].State != alarm.Delivered {
		t.Errorf("outbox %+v %v: want one delivered row", ds, err)
	}
	// The organisation's admins see it among their alarms and acknowledge it; another organisation's do not.
	if b := f.do(t, "GET", "/api/v1/alarms?state=active", "east-admin", "", 200); !strings.Contains(string(b), g.Alert.Alarm) {
		t.Errorf("east's admin does not see the alert: %s", b)
	}
	if b := f.do(t, "GET", "/api/v1/alarms", "west-admin", "", 200); strings.Contains(string(b), g.Alert.Alarm) {
		t.Errorf("west's admin sees east's alert: %s", b)
	}
	// The nurse it is about can neither see it nor acknowledge it away.
	if b := f.do(t, "GET", "/api/v1/alarms?patient=pt-east-2", "east-nurse", "", 200); strings.Contains(string(b), g.Alert.Alarm) {
		t.Errorf("the grantee sees the alert about them: %s", b)
	}
	f.do(t, "POST", "/api/v1/alarms/"+g.Alert.Alarm+"/ack", "east-nurse", `{"reason":"nothing to see"}`, 404)
	f.do(t, "POST", "/api/v1/alarms/"+g.Alert.Alarm+"/ack", "east-admin", `{"reason":"reviewed with the ward"}`, 200)

	// Everything the nurse reads under the grant is in the trail as break-glass; the own patient is not.
	f.do(t, "GET", "/fhir/Patient/pt-east-2", "east-nurse", "", 200)
	f.do(t, "GET", "/api/v1/patients/pt-east-2/latest", "east-nurse", "", 200)
	f.do(t, "GET", "/fhir/Observation?patient=pt-east-2", "east-nurse", "", 200)
	f.do(t, "GET", "/fhir/Patient/pt-east-1", "east-nurse", "", 200)
	es, err := f.st.AuditEntries(ctx, store.AuditQuery{Subject: "east-nurse"})
	if err != nil {
		t.Fatal(err)
	}
	var btg, plain int
	for _, e := range es {
		opened := len(e.Patients) > 0 && e.Patients[0] == "pt-east-2" && e.Status < 400
		switch {
		case opened && e.Purpose == audit.PurposeBreakGlass:
			btg++
		case opened:
			t.Errorf("read under the grant not flagged: %+v", e)
		case e.Purpose != "":
			t.Errorf("flagged %q though not under the grant: %+v", e.Purpose, e)
		default:
			plain++
		}
	}
	// The grant itself, the alarm listing and three reads; the refused read before the grant and the own patient's read are not.
	if btg != 5 || plain < 2 {
		t.Errorf("%d break-glass and %d ordinary records of the nurse, want 5 and at least 2: %+v", btg, plain, es)
	}
	if res, err := audit.Verify(ctx, f.st); err != nil || res.Problem != nil || res.Count == 0 {
		t.Errorf("the chain does not verify with purposes in it: %+v %v", res, err)
	}
}

func TestBreakGlassWithoutPrivacyOfficerAlertsAdmins(t *testing.T) {
	f := newBGFixture(t)
	ctx := context.Background()
	f.do(t, "PUT", "/api/v1/users/west-admin/contact", "west-admin", `{"contact":"email:admin@west.example"}`, 200)
	f.do(t, "PUT", "/api/v1/users/west-admin2/contact", "west-admin", `{"contact":"email:admin2@west.example"}`, 200)
	var g breakGlassJSON
	json.Unmarshal(f.do(t, "POST", "/api/v1/break-glass", "west-nurse", `{"patient":"pt-west-1","reason":"unresponsive"}`, 201), &g)
	if g.Alert == nil || g.Alert.To != "admins" || g.Alert.Recipients != 2 || !strings.Contains(g.Alert.Note, "no privacy officer") {
		t.Fatalf("alert in the answer: %+v", g.Alert)
	}
	if _, err := f.disp.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var to []string
	for _, m := range f.mb.received() {
		to = append(to, m.to)
	}
	if strings.Join(to, ",") != "admin@west.example,admin2@west.example" && strings.Join(to, ",") != "admin2@west.example,admin@west.example" {
		t.Errorf("mail went to %v, want both admins", to)
	}
	// An officer without an address: the admins, and the answer says why.
	f.do(t, "PUT", "/api/v1/users/east-admin/contact", "east-admin", `{"contact":"email:admin@east.example"}`, 200)
	json.Unmarshal(f.do(t, "POST", "/api/v1/break-glass", "east-nurse", `{"patient":"pt-east-1","reason":"arrest"}`, 201), &g)
	if g.Alert == nil || g.Alert.To != "admins" || g.Alert.Recipients != 1 || !strings.Contains(g.Alert.Note, "no contact address") {
		t.Errorf("alert in the answer: %+v", g.Alert)
	}
}
