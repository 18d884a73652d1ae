// Package archive moves a whole Tend installation between stores: Export
// writes everything an installation keeps (organisations, registry,
// credentials as hashes, users with their sealed second factor and sign-in
// failure counters, care teams, consents, break-glass grants, OAuth clients
// with the assertion ids they used, device CAs and certificates, patient
// notes, readings, dead letters, alarm episodes with their history and
// outbox, rule and escalation documents, webhooks, and the hash-chained
// audit trail with its head) to one file, and Import
// loads that file into an empty store, typically to move an embedded
// (SQLite) installation to scale-out (PostgreSQL).
//
// The file is gzip-compressed JSON lines: a header, then one record per
// line, each {"kind": ..., "data": ...}, in an order Import can replay
// (organisations first, patients before the devices bound to them and the
// care teams they are in, episodes with their history, the audit trail in
// sequence order). Readings travel in Tend's own batch encoding, so every
// field round-trips exactly; audit records keep their sequence numbers and
// hashes, so the chain verifies and continues on the new store.
//
// Not exported: rule engine state and stream positions (they belong to
// the old stream; the new installation's engine starts fresh and open
// episodes continue), dashboard sessions (ephemeral: everyone signs in
// again) and FHIR bulk export jobs (their files expire anyway). TOTP
// secrets stay sealed with the key derived from the data directory's
// web-session.key; the header names that key (by a one-way fingerprint)
// so that Import can refuse to pair them with another key.
//
// Version 1 files (from before organisations) still import: everything in
// them belongs to store.DefaultOrg.
package archive

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// Format and Version name the file format in its header. Version 2 added
// organisations, care teams, consents, break-glass grants, OAuth clients
// and assertion ids, second factors, sign-in failure counters and the
// audit trail; Import still reads MinVersion files.
const (
	Format     = "tend-export"
	Version    = 2
	MinVersion = 1
)

const (
	pageSize    = 1000
	readingPage = 5000
	// maxLine bounds one record: a reading page, or a dead letter with its
	// payload (payloads are limited far below this at ingest).
	maxLine = 64 << 20
)

// Source is a store that can list everything it holds; *sqlite.Store
// satisfies it.
type Source interface {
	Patients(ctx context.Context, ident *store.Identifier, limit, offset int) ([]store.Patient, int, error)
	DeviceIDs(ctx context.Context) ([]string, error)
	Device(ctx context.Context, id string) (store.Device, error)
	Bindings(ctx context.Context, device string) ([]store.Binding, error)
	DeviceSecret(ctx context.Context, device string) ([]byte, error)
	Tokens(ctx context.Context) ([]store.Token, error)
	Users(ctx context.Context) ([]store.User, error)
	Samples(ctx context.Context, q store.Query) ([]store.Sample, error)
	DeadLetters(ctx context.Context, limit int, beforeID int64) ([]store.DeadLetter, error)

	Orgs(ctx context.Context) ([]store.Organisation, error)
	CareTeams(ctx context.Context, org string) ([]store.CareTeam, error)
	Consents(ctx context.Context, org, patient string) ([]store.Consent, error)
	BreakGlassGrants(ctx context.Context, org string, limit int) ([]store.BreakGlass, error)
	OAuthClients(ctx context.Context, org string) ([]store.OAuthClient, error)
	JTIs(ctx context.Context, now time.Time) ([]store.JTI, error)
	UserTOTP(ctx context.Context, user string) (store.TOTP, error)
	AllSignInFailures(ctx context.Context) ([]store.KeyedSignInFailures, error)
	AuditEntries(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error)
	AuditHead(ctx context.Context) (store.AuditHead, error)
	DeviceCAs(ctx context.Context) ([]store.DeviceCA, error)
	DeviceCerts(ctx context.Context, device string) ([]store.DeviceCert, error)
	Notes(ctx context.Context, patient string, limit int) ([]store.Note, error)
	UserContact(ctx context.Context, user string) (string, error)
}

// AlarmSource is an alarm store that can list its documents;
// *alarmdb.DB satisfies it.
type AlarmSource interface {
	Alarms(ctx context.Context, f alarm.Filter) ([]alarm.Alarm, error)
	History(ctx context.Context, alarm string) ([]alarm.Change, error)
	Deliveries(ctx context.Context, alarm string) ([]alarm.Delivery, error)
	DocKeys(ctx context.Context) ([][2]string, error)
	DocHistory(ctx context.Context, scope, kind string) ([]alarm.Doc, error)
	Webhooks(ctx context.Context) ([]alarm.Webhook, error)
}

// Stats counts what was exported or imported.
type Stats struct {
	Patients    int `json:"patients"`
	Devices     int `json:"devices"`
	Users       int `json:"users"`
	Tokens      int `json:"tokens"`
	Readings    int `json:"readings"`
	DeadLetters int `json:"dead_letters"`
	Alarms      int `json:"alarms"`
	Documents   int `json:"documents"`
	Webhooks    int `json:"webhooks"`
	// Since version 2.
	Orgs           int `json:"orgs,omitempty"`
	CareTeams      int `json:"care_teams,omitempty"`
	Consents       int `json:"consents,omitempty"`
	BreakGlass     int `json:"break_glass,omitempty"`
	OAuthClients   int `json:"oauth_clients,omitempty"`
	JTIs           int `json:"jtis,omitempty"`
	SecondFactors  int `json:"second_factors,omitempty"`
	SignInFailures int `json:"signin_failures,omitempty"`
	AuditRecords   int `json:"audit_records,omitempty"`
	DeviceCAs      int `json:"device_cas,omitempty"`
	DeviceCerts    int `json:"device_certs,omitempty"`
	Notes          int `json:"notes,omitempty"`
}

// Options are what Export records in the header besides the data.
type Options struct {
	// Now stamps the header; assertion ids expired by then are left out.
	Now time.Time
	// SealKeyID fingerprints the key the second factors are sealed with
	// (see SealKeyID); "" when the installation has none.
	SealKeyID string
}

// Header is the first line of an export.
type Header struct {
	Format    string    `json:"format"`
	Version   int       `json:"version"`
	Created   time.Time `json:"created"`
	SealKeyID string    `json:"seal_key_id,omitempty"`
}

// SealKeyID is a one-way fingerprint of a data directory's key file (its
// web-session.key), so two files can be compared without either key
// leaving its directory.
func SealKeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("tend export seal key id\x00"), key...))
	return hex.EncodeToString(sum[:8])
}

type line struct {
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

type deviceRecord struct {
	Device     store.Device    `json:"device"`
	Bindings   []store.Binding `json:"bindings"`
	SecretHash []byte          `json:"secret_hash,omitempty"`
}

type alarmRecord struct {
	Alarm      alarm.Alarm      `json:"alarm"`
	History    []alarm.Change   `json:"history"`
	Deliveries []deliveryRecord `json:"deliveries"`
}

// deliveryRecord and docRecord carry the fields the API hides.
type deliveryRecord struct {
	alarm.Delivery
	Body []byte `json:"body"`
}

type docRecord struct {
	alarm.Doc
	Body []byte `json:"body"`
}

type webhookRecord struct {
	alarm.Webhook
	Secret []byte `json:"secret"`
}

// userRecord is a user with their second factor (sealed), if any; a
// version 1 "user" line is the bare store.User, which decodes the same.
type userRecord struct {
	store.User
	TOTP    *store.TOTP `json:"totp,omitempty"`
	Contact string      `json:"contact,omitempty"` // notification address
}

// Export writes everything src and alarms hold to w.
func Export(ctx context.Context, src Source, alarms AlarmSource, w io.Writer, opts Options) (Stats, error) {
	var st Stats
	zw := gzip.NewWriter(w)
	enc := json.NewEncoder(zw)
	put := func(kind string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", kind, err)
		}
		return enc.Encode(line{Kind: kind, Data: data})
	}
	if err := enc.Encode(Header{Format: Format, Version: Version, Created: opts.Now.UTC(), SealKeyID: opts.SealKeyID}); err != nil {
		return st, err
	}
	// Dependency order: organisations, then who and what belongs to them,
	// then what refers to users and patients, then the audit trail last
	// (it only grows, and nothing refers to it).
	steps := []func() error{
		func() error { return exportOrgs(ctx, src, put, &st) },
		func() error { return exportUsers(ctx, src, put, &st) },
		func() error { return exportOAuth(ctx, src, opts.Now, put, &st) },
		func() error { return exportPatients(ctx, src, put, &st) },
		func() error { return exportDevices(ctx, src, put, &st) },
		func() error { return exportAccess(ctx, src, put, &st) },
		func() error { return exportNotes(ctx, src, put, &st) },
		func() error { return exportAllReadings(ctx, src, put, &st) },
		func() error { return exportDeadLetters(ctx, src, put, &st) },
		func() error { return exportAlarms(ctx, alarms, put, &st) },
		func() error { return exportAudit(ctx, src, put, &st) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return st, fmt.Errorf("archive: export: %w", err)
		}
	}
	if err := put("end", st); err != nil {
		return st, err
	}
	return st, zw.Close()
}

type putFunc func(kind string, v any) error

func exportUsers(ctx context.Context, src Source, put putFunc, st *Stats) error {
	users, err := src.Users(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		rec := userRecord{User: u}
		f, err := src.UserTOTP(ctx, u.ID)
		if err != nil {
			return fmt.Errorf("second factor of a user: %w", err)
		}
		if f.Secret != nil {
			rec.TOTP = &f
			st.SecondFactors++
		}
		if rec.Contact, err = src.UserContact(ctx, u.ID); err != nil {
			return fmt.Errorf("contact of a user: %w", err)
		}
		if err := put("user", rec); err != nil {
			return err
		}
		st.Users++
	}
	fails, err := src.AllSignInFailures(ctx)
	if err != nil {
		return err
	}
	for _, f := range fails {
		if err := put("signin_failures", f); err != nil {
			return err
		}
		st.SignInFailures++
	}
	return nil
}

func exportOrgs(ctx context.Context, src Source, put putFunc, st *Stats) error {
	orgs, err := src.Orgs(ctx)
	if err != nil {
		return err
	}
	for _, o := range orgs {
		if err := put("org", o); err != nil {
			return err
		}
		st.Orgs++
	}
	// Each organisation's device CA: its key stays sealed with the
	// operator's --ca-key-file, which keeps working on the new store.
	cas, err := src.DeviceCAs(ctx)
	if err != nil {
		return err
	}
	for _, ca := range cas {
		if err := put("device_ca", ca); err != nil {
			return err
		}
		st.DeviceCAs++
	}
	return nil
}

// exportOAuth writes the clients, then every token (OAuth access tokens
// name their client), then the assertion ids still remembered at now, so a
// replayed assertion stays refused after the move.
func exportOAuth(ctx context.Context, src Source, now time.Time, put putFunc, st *Stats) error {
	clients, err := src.OAuthClients(ctx, "")
	if err != nil {
		return err
	}
	for _, c := range clients {
		if err := put("oauth_client", c); err != nil {
			return err
		}
		st.OAuthClients++
	}
	tokens, err := src.Tokens(ctx)
	if err != nil {
		return err
	}
	for _, t := range tokens {
		if err := put("token", t); err != nil {
			return err
		}
		st.Tokens++
	}
	jtis, err := src.JTIs(ctx, now)
	if err != nil {
		return err
	}
	for _, j := range jtis {
		if err := put("jti", j); err != nil {
			return err
		}
		st.JTIs++
	}
	return nil
}

// exportAccess writes each organisation's care teams (with members and
// patients), consents and break-glass grants, oldest first.
func exportAccess(ctx context.Context, src Source, put putFunc, st *Stats) error {
	orgs, err := src.Orgs(ctx)
	if err != nil {
		return err
	}
	for _, o := range orgs {
		teams, err := src.CareTeams(ctx, o.ID)
		if err != nil {
			return err
		}
		for _, t := range teams {
			if err := put("care_team", t); err != nil {
				return err
			}
			st.CareTeams++
		}
		cs, err := src.Consents(ctx, o.ID, "")
		if err != nil {
			return err
		}
		slices.Reverse(cs)
		for _, c := range cs {
			if err := put("consent", c); err != nil {
				return err
			}
			st.Consents++
		}
		gs, err := src.BreakGlassGrants(ctx, o.ID, 0)
		if err != nil {
			return err
		}
		slices.Reverse(gs)
		for _, g := range gs {
			if err := put("break_glass", g); err != nil {
				return err
			}
			st.BreakGlass++
		}
	}
	return nil
}

// exportAudit writes the trail in sequence order, verbatim, then its
// stored head, which Import compares with the head it rebuilt.
func exportAudit(ctx context.Context, src Source, put putFunc, st *Stats) error {
	head, err := src.AuditHead(ctx)
	if err != nil {
		return err
	}
	for after := int64(0); ; {
		es, err := src.AuditEntries(ctx, store.AuditQuery{AfterSeq: after, Limit: pageSize})
		if err != nil {
			return fmt.Errorf("audit records after %d: %w", after, err)
		}
		for _, e := range es {
			if err := put("audit", e); err != nil {
				return err
			}
			st.AuditRecords++
			after = e.Seq
		}
		if len(es) < pageSize {
			break
		}
	}
	if head.Seq == 0 && st.AuditRecords == 0 {
		return nil
	}
	return put("audit_head", head)
}

func exportPatients(ctx context.Context, src Source, put putFunc, st *Stats) error {
	for offset := 0; ; offset += pageSize {
		ps, _, err := src.Patients(ctx, nil, pageSize, offset)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if err := put("patient", p); err != nil {
				return err
			}
			st.Patients++
		}
		if len(ps) < pageSize {
			break
		}
	}
	return nil
}

func exportDevices(ctx context.Context, src Source, put putFunc, st *Stats) error {
	ids, err := src.DeviceIDs(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		d, err := src.Device(ctx, id)
		if err != nil {
			return err
		}
		bs, err := src.Bindings(ctx, id)
		if err != nil {
			return err
		}
		rec := deviceRecord{Device: d, Bindings: bs}
		if rec.SecretHash, err = src.DeviceSecret(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := put("device", rec); err != nil {
			return err
		}
		st.Devices++
		certs, err := src.DeviceCerts(ctx, id)
		if err != nil {
			return err
		}
		for _, c := range certs {
			if err := put("device_cert", c); err != nil {
				return err
			}
			st.DeviceCerts++
		}
	}
	return nil
}

// exportNotes writes every patient's notes, oldest first.
func exportNotes(ctx context.Context, src Source, put putFunc, st *Stats) error {
	for offset := 0; ; offset += pageSize {
		ps, _, err := src.Patients(ctx, nil, pageSize, offset)
		if err != nil {
			return err
		}
		for _, p := range ps {
			ns, err := src.Notes(ctx, p.ID, 0)
			if err != nil {
				return fmt.Errorf("notes of a patient: %w", err)
			}
			slices.Reverse(ns)
			for _, n := range ns {
				if err := put("note", n); err != nil {
					return err
				}
				st.Notes++
			}
		}
		if len(ps) < pageSize {
			return nil
		}
	}
}

// exportAllReadings writes every patient's readings, oldest first, after
// every device (an importer binds devices first).
func exportAllReadings(ctx context.Context, src Source, put putFunc, st *Stats) error {
	for offset := 0; ; offset += pageSize {
		ps, _, err := src.Patients(ctx, nil, pageSize, offset)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if err := exportReadings(ctx, src, p.ID, put, st); err != nil {
				return err
			}
		}
		if len(ps) < pageSize {
			return nil
		}
	}
}

func exportReadings(ctx context.Context, src Source, patient string, put putFunc, st *Stats) error {
	after := ""
	for {
		ss, err := src.Samples(ctx, store.Query{Patient: patient, Oldest: true, Limit: readingPage, After: after})
		if err != nil {
			return fmt.Errorf("readings of a patient: %w", err)
		}
		if len(ss) == 0 {
			return nil
		}
		rs := make([]reading.Reading, len(ss))
		for i, s := range ss {
			rs[i] = s.Reading
		}
		if err := put("readings", reading.EncodeBatch(rs)); err != nil {
			return err
		}
		st.Readings += len(rs)
		if len(ss) < readingPage {
			return nil
		}
		after = ss[len(ss)-1].ID
	}
}

// exportDeadLetters writes dead letters oldest first (the source lists
// newest first).
func exportDeadLetters(ctx context.Context, src Source, put putFunc, st *Stats) error {
	var all []store.DeadLetter
	before := int64(0)
	for {
		ds, err := src.DeadLetters(ctx, pageSize, before)
		if err != nil {
			return err
		}
		all = append(all, ds...)
		if len(ds) < pageSize {
			break
		}
		before = ds[len(ds)-1].ID
	}
	slices.Reverse(all)
	for _, d := range all {
		if err := put("dead_letter", d); err != nil {
			return err
		}
		st.DeadLetters++
	}
	return nil
}

func exportAlarms(ctx context.Context, src AlarmSource, put putFunc, st *Stats) error {
	keys, err := src.DocKeys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		docs, err := src.DocHistory(ctx, k[0], k[1])
		if err != nil {
			return err
		}
		slices.Reverse(docs) // oldest first: Import replays the versions
		for _, d := range docs {
			if err := put("document", docRecord{Doc: d, Body: d.Body}); err != nil {
				return err
			}
			st.Documents++
		}
	}
	hooks, err := src.Webhooks(ctx)
	if err != nil {
		return err
	}
	for _, h := range hooks {
		if err := put("webhook", webhookRecord{Webhook: h, Secret: h.Secret}); err != nil {
			return err
		}
		st.Webhooks++
	}
	as, err := src.Alarms(ctx, alarm.Filter{})
	if err != nil {
		return err
	}
	slices.Reverse(as) // oldest raised first
	for _, a := range as {
		rec := alarmRecord{Alarm: a}
		if rec.History, err = src.History(ctx, a.ID); err != nil {
			return err
		}
		ds, err := src.Deliveries(ctx, a.ID)
		if err != nil {
			return err
		}
		for _, d := range ds {
			rec.Deliveries = append(rec.Deliveries, deliveryRecord{Delivery: d, Body: d.Body})
		}
		if err := put("alarm", rec); err != nil {
			return err
		}
		st.Alarms++
	}
	return nil
}

// ImportOptions say what Import checks the file against.
type ImportOptions struct {
	// SealKeyID fingerprints the key the new installation's nodes will
	// open second factors with (SealKeyID of their web-session.key); ""
	// when not known here. A file whose second factors were sealed with
	// another key is refused: those users could not sign in.
	SealKeyID string
}

// Import loads an export into dst and alarms, which must be empty (no
// organisation but the default one, no patients, users, tokens, OAuth
// clients or audit records): merging two installations is not supported.
func Import(ctx context.Context, r io.Reader, dst store.Store, alarms alarm.Store, opts ImportOptions) (Stats, error) {
	var st Stats
	if err := checkEmpty(ctx, dst); err != nil {
		return st, err
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return st, fmt.Errorf("archive: not a Tend export (gzip): %w", err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), maxLine)
	if !sc.Scan() {
		return st, fmt.Errorf("archive: empty export: %w", sc.Err())
	}
	h, err := ParseHeader(sc.Bytes())
	if err != nil {
		return st, err
	}
	if h.SealKeyID != "" && opts.SealKeyID != "" && h.SealKeyID != opts.SealKeyID {
		return st, fmt.Errorf("archive: the export's second factors are sealed with another web-session.key (fingerprint %s) than this data directory's (%s): copy web-session.key from the exported data directory here first", h.SealKeyID, opts.SealKeyID)
	}
	im := importer{dst: dst, alarms: alarms, st: &st, created: h.Created}
	var want *Stats
	for n := 2; sc.Scan(); n++ {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return st, fmt.Errorf("archive: line %d: %w", n, err)
		}
		if l.Kind == "end" {
			want = new(Stats)
			if err := json.Unmarshal(l.Data, want); err != nil {
				return st, fmt.Errorf("archive: line %d: %w", n, err)
			}
			continue
		}
		if err := im.record(ctx, l); err != nil {
			return st, fmt.Errorf("archive: line %d (%s): %w", n, l.Kind, err)
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("archive: read: %w", err)
	}
	if want == nil {
		return st, errors.New("archive: the export is truncated (no end record); nothing after the last line was imported")
	}
	if *want != st {
		return st, fmt.Errorf("archive: imported %+v but the export lists %+v", st, *want)
	}
	if st.AuditRecords > 0 && !im.headChecked {
		return st, errors.New("archive: the export has audit records but no audit head")
	}
	return st, nil
}

// ParseHeader reads an export's first line and refuses anything this tend
// cannot import.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if err := json.Unmarshal(b, &h); err != nil || h.Format != Format {
		return Header{}, errors.New("archive: not a Tend export (no header)")
	}
	switch {
	case h.Version > Version:
		return Header{}, fmt.Errorf("archive: export format version %d was written by a newer tend; this tend reads versions %d to %d: import with a tend at least as new as the one that exported", h.Version, MinVersion, Version)
	case h.Version < MinVersion:
		return Header{}, fmt.Errorf("archive: export format version %d is not a version any tend wrote", h.Version)
	}
	return h, nil
}

func checkEmpty(ctx context.Context, dst store.Store) error {
	fail := func(err error) error { return fmt.Errorf("archive: check the target store: %w", err) }
	_, patients, err := dst.Patients(ctx, nil, 1, 0)
	if err != nil {
		return fail(err)
	}
	var users, tokens int
	for _, role := range store.Roles {
		u, err := dst.CountUsers(ctx, role)
		if err != nil {
			return fail(err)
		}
		t, err := dst.CountTokens(ctx, role)
		if err != nil {
			return fail(err)
		}
		users, tokens = users+u, tokens+t
	}
	orgs, err := dst.Orgs(ctx)
	if err != nil {
		return fail(err)
	}
	extraOrgs := 0
	for _, o := range orgs {
		if o.ID != store.DefaultOrg {
			extraOrgs++
		}
	}
	clients, err := dst.OAuthClients(ctx, "")
	if err != nil {
		return fail(err)
	}
	head, err := dst.AuditHead(ctx)
	if err != nil {
		return fail(err)
	}
	if patients+users+tokens+extraOrgs+len(clients) > 0 || head.Seq > 0 {
		return fmt.Errorf("archive: the target store is not empty (%d patients, %d users, %d tokens, %d organisations besides the default one, %d OAuth clients, %d audit records): import into a new store, before its first `tend serve`",
			patients, users, tokens, extraOrgs, len(clients), head.Seq)
	}
	return nil
}

// importer replays records into one store.
type importer struct {
	dst         store.Store
	alarms      alarm.Store
	st          *Stats
	created     time.Time // the export's time: assertion ids are kept as of then
	headChecked bool
}

func (im *importer) record(ctx context.Context, l line) error {
	dst, st := im.dst, im.st
	switch l.Kind {
	case "org":
		var o store.Organisation
		if err := json.Unmarshal(l.Data, &o); err != nil {
			return err
		}
		st.Orgs++
		return dst.PutOrg(ctx, o)
	case "user":
		var u userRecord
		if err := json.Unmarshal(l.Data, &u); err != nil {
			return err
		}
		st.Users++
		if err := dst.CreateUser(ctx, u.User); err != nil {
			return err
		}
		if u.Contact != "" {
			if err := dst.SetUserContact(ctx, u.ID, u.Contact); err != nil {
				return err
			}
		}
		if u.TOTP == nil {
			return nil
		}
		st.SecondFactors++
		return importTOTP(ctx, dst, u.ID, *u.TOTP)
	case "signin_failures":
		var f store.KeyedSignInFailures
		if err := json.Unmarshal(l.Data, &f); err != nil {
			return err
		}
		st.SignInFailures++
		return dst.PutSignInFailures(ctx, f.Key, f.SignInFailures)
	case "oauth_client":
		var c store.OAuthClient
		if err := json.Unmarshal(l.Data, &c); err != nil {
			return err
		}
		st.OAuthClients++
		return dst.CreateOAuthClient(ctx, c)
	case "token":
		var t store.Token
		if err := json.Unmarshal(l.Data, &t); err != nil {
			return err
		}
		st.Tokens++
		return dst.PutToken(ctx, t)
	case "jti":
		var j store.JTI
		if err := json.Unmarshal(l.Data, &j); err != nil {
			return err
		}
		st.JTIs++
		return dst.UseJTI(ctx, j.Client, j.JTI, j.Expires, im.created)
	case "care_team":
		var t store.CareTeam
		if err := json.Unmarshal(l.Data, &t); err != nil {
			return err
		}
		st.CareTeams++
		return importCareTeam(ctx, dst, t)
	case "consent":
		var c store.Consent
		if err := json.Unmarshal(l.Data, &c); err != nil {
			return err
		}
		st.Consents++
		return dst.CreateConsent(ctx, c)
	case "break_glass":
		var g store.BreakGlass
		if err := json.Unmarshal(l.Data, &g); err != nil {
			return err
		}
		st.BreakGlass++
		return dst.CreateBreakGlass(ctx, g)
	case "device_ca":
		var ca store.DeviceCA
		if err := json.Unmarshal(l.Data, &ca); err != nil {
			return err
		}
		st.DeviceCAs++
		return dst.CreateDeviceCA(ctx, ca)
	case "device_cert":
		var c store.DeviceCert
		if err := json.Unmarshal(l.Data, &c); err != nil {
			return err
		}
		st.DeviceCerts++
		return dst.AddDeviceCert(ctx, c) // revoked ones stay revoked, at the same time
	case "note":
		var n store.Note
		if err := json.Unmarshal(l.Data, &n); err != nil {
			return err
		}
		st.Notes++
		return dst.AddNote(ctx, n)
	case "audit":
		var e store.AuditEntry
		if err := json.Unmarshal(l.Data, &e); err != nil {
			return err
		}
		st.AuditRecords++
		return importAudit(ctx, dst, e)
	case "audit_head":
		var want store.AuditHead
		if err := json.Unmarshal(l.Data, &want); err != nil {
			return err
		}
		got, err := dst.AuditHead(ctx)
		if err != nil {
			return err
		}
		if got.Seq != want.Seq || !bytes.Equal(got.Hash, want.Hash) {
			return fmt.Errorf("the exported audit trail ends at record %d but its head names record %d: the trail was cut short on the source (`tend audit verify` there says where)", got.Seq, want.Seq)
		}
		im.headChecked = true
		return nil
	}
	return importRecord(ctx, l, dst, im.alarms, st)
}

// importTOTP stores a sealed second factor as it was, including the last
// step used, so a code already used before the move stays used.
func importTOTP(ctx context.Context, dst store.Store, user string, f store.TOTP) error {
	if err := dst.SetUserTOTP(ctx, user, f.Secret, f.Enabled); err != nil {
		return err
	}
	if f.LastStep == 0 {
		return nil
	}
	_, err := dst.AcceptTOTPStep(ctx, user, f.LastStep)
	return err
}

func importCareTeam(ctx context.Context, dst store.Store, t store.CareTeam) error {
	if err := dst.CreateCareTeam(ctx, t); err != nil {
		return err
	}
	for _, u := range t.Members {
		if err := dst.SetCareTeamMember(ctx, t.ID, u, true); err != nil {
			return err
		}
	}
	for _, p := range t.Patients {
		if err := dst.SetCareTeamPatient(ctx, t.ID, p, true); err != nil {
			return err
		}
	}
	return nil
}

// importAudit appends one record verbatim (same sequence number, times and
// hashes), through the store's ordinary append, which refuses a record
// that does not extend the chain.
func importAudit(ctx context.Context, dst store.Store, e store.AuditEntry) error {
	_, err := dst.AppendAudit(ctx, func(head store.AuditHead) (store.AuditEntry, error) {
		if e.Seq != head.Seq+1 {
			return store.AuditEntry{}, fmt.Errorf("audit record %d follows record %d: the exported trail has a gap (`tend audit verify` on the source says where)", e.Seq, head.Seq)
		}
		return e, nil
	})
	return err
}

// importRecord replays the kinds version 1 already had, except users and
// tokens (importer.record).
func importRecord(ctx context.Context, l line, dst store.Store, alarms alarm.Store, st *Stats) error {
	switch l.Kind {
	case "patient":
		var p store.Patient
		if err := json.Unmarshal(l.Data, &p); err != nil {
			return err
		}
		st.Patients++
		return dst.CreatePatient(ctx, &p)
	case "device":
		var rec deviceRecord
		if err := json.Unmarshal(l.Data, &rec); err != nil {
			return err
		}
		st.Devices++
		return importDevice(ctx, dst, rec)
	case "readings":
		var b []byte
		if err := json.Unmarshal(l.Data, &b); err != nil {
			return err
		}
		rs, err := reading.DecodeBatch(b)
		if err != nil {
			return err
		}
		st.Readings += len(rs)
		_, err = dst.Append(ctx, rs)
		return err
	case "dead_letter":
		var d store.DeadLetter
		if err := json.Unmarshal(l.Data, &d); err != nil {
			return err
		}
		st.DeadLetters++
		replayed := d.Replayed
		if err := dst.AddDeadLetter(ctx, &d); err != nil {
			return err
		}
		if !replayed.IsZero() {
			return dst.MarkReplayed(ctx, d.ID, replayed)
		}
		return nil
	case "document":
		var rec docRecord
		if err := json.Unmarshal(l.Data, &rec); err != nil {
			return err
		}
		st.Documents++
		d := rec.Doc
		d.Body = rec.Body
		return alarms.PutDoc(ctx, &d)
	case "webhook":
		var rec webhookRecord
		if err := json.Unmarshal(l.Data, &rec); err != nil {
			return err
		}
		st.Webhooks++
		w := rec.Webhook
		w.Secret = rec.Secret
		return alarms.PutWebhook(ctx, w)
	case "alarm":
		var rec alarmRecord
		if err := json.Unmarshal(l.Data, &rec); err != nil {
			return err
		}
		st.Alarms++
		return importAlarm(ctx, alarms, rec)
	}
	return fmt.Errorf("unknown record kind %q (made by a newer tend?)", l.Kind)
}

// importDevice registers the device and replays its binding history, so
// readings keep resolving to the patient the device was bound to then.
func importDevice(ctx context.Context, dst store.Store, rec deviceRecord) error {
	d := rec.Device
	current := d.Patient
	at := d.Updated
	d.Patient = ""
	if len(rec.Bindings) > 0 {
		d.Patient, at = rec.Bindings[0].Patient, rec.Bindings[0].From
	}
	if err := dst.CreateDevice(ctx, &d, at); err != nil {
		return err
	}
	rebind := func(patient string, at time.Time) error {
		d.Patient = patient
		return dst.UpdateDevice(ctx, &d, at)
	}
	for i, b := range rec.Bindings {
		if i > 0 {
			prev := rec.Bindings[i-1]
			if prev.To.Before(b.From) {
				if err := rebind("", prev.To); err != nil {
					return err
				}
			}
			if err := rebind(b.Patient, b.From); err != nil {
				return err
			}
		}
		if !b.To.IsZero() && i == len(rec.Bindings)-1 {
			if err := rebind("", b.To); err != nil {
				return err
			}
		}
	}
	if d.Patient != current {
		return fmt.Errorf("device %s: binding history ends with %q but the device is bound to %q", d.ID, d.Patient, current)
	}
	if rec.SecretHash != nil {
		return dst.SetDeviceSecret(ctx, d.ID, rec.SecretHash)
	}
	return nil
}

func importAlarm(ctx context.Context, alarms alarm.Store, rec alarmRecord) error {
	return alarms.Update(ctx, func(tx alarm.Tx) error {
		a := rec.Alarm
		a.Version = 0 // a new row in this store
		if err := tx.PutAlarm(&a); err != nil {
			return err
		}
		for _, c := range rec.History {
			c.Alarm = a.ID
			if err := tx.AddChange(c); err != nil {
				return err
			}
		}
		for _, dr := range rec.Deliveries {
			d := dr.Delivery
			d.Body = dr.Body
			if err := tx.Enqueue(d); err != nil {
				return err
			}
			if d.State != alarm.Pending {
				if err := tx.FinishDelivery(d); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
