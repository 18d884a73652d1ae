// Package archive moves a whole Tend installation between stores: Export
// writes everything an installation keeps (registry, credentials as hashes,
// readings, dead letters, alarm episodes with their history and outbox,
// rule and escalation documents, webhooks) to one file, and Import loads
// that file into an empty store, typically to move an embedded (SQLite)
// installation to scale-out (PostgreSQL).
//
// The file is gzip-compressed JSON lines: a header, then one record per
// line, each {"kind": ..., "data": ...}, in an order Import can replay
// (patients before the devices bound to them, episodes with their
// history). Readings travel in Tend's own batch encoding, so every field
// round-trips exactly. Rule engine state and stream positions are not
// exported: they belong to the old stream, and the new installation's
// engine starts fresh (open episodes are kept and continue).
package archive

import (
	"bufio"
	"compress/gzip"
	"context"
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

// Format and Version name the file format in its header.
const (
	Format  = "tend-export"
	Version = 1
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
}

type header struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Created time.Time `json:"created"`
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

// Export writes everything src and alarms hold to w. now stamps the header.
func Export(ctx context.Context, src Source, alarms AlarmSource, w io.Writer, now time.Time) (Stats, error) {
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
	if err := enc.Encode(header{Format: Format, Version: Version, Created: now.UTC()}); err != nil {
		return st, err
	}
	steps := []func() error{
		func() error { return exportUsers(ctx, src, put, &st) },
		func() error { return exportPatients(ctx, src, put, &st) },
		func() error { return exportDevices(ctx, src, put, &st) },
		func() error { return exportAllReadings(ctx, src, put, &st) },
		func() error { return exportDeadLetters(ctx, src, put, &st) },
		func() error { return exportAlarms(ctx, alarms, put, &st) },
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
		if err := put("user", u); err != nil {
			return err
		}
		st.Users++
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
	return nil
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
	}
	return nil
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

// Import loads an export into dst and alarms, which must be empty (no
// patients, users or tokens): merging two installations is not supported.
func Import(ctx context.Context, r io.Reader, dst store.Store, alarms alarm.Store) (Stats, error) {
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
	var h header
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Format != Format {
		return st, errors.New("archive: not a Tend export (no header)")
	}
	if h.Version != Version {
		return st, fmt.Errorf("archive: export format version %d; this tend reads version %d", h.Version, Version)
	}
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
		if err := importRecord(ctx, l, dst, alarms, &st); err != nil {
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
	return st, nil
}

func checkEmpty(ctx context.Context, dst store.Store) error {
	_, patients, err := dst.Patients(ctx, nil, 1, 0)
	if err != nil {
		return fmt.Errorf("archive: check the target store: %w", err)
	}
	users, err := dst.CountUsers(ctx, store.RoleAdmin)
	if err != nil {
		return fmt.Errorf("archive: check the target store: %w", err)
	}
	tokens, err := dst.CountTokens(ctx, store.RoleAdmin)
	if err != nil {
		return fmt.Errorf("archive: check the target store: %w", err)
	}
	if patients+users+tokens > 0 {
		return fmt.Errorf("archive: the target store is not empty (%d patients, %d admin users, %d admin tokens): import into a new store, before its first `tend serve`", patients, users, tokens)
	}
	return nil
}

func importRecord(ctx context.Context, l line, dst store.Store, alarms alarm.Store, st *Stats) error {
	switch l.Kind {
	case "user":
		var u store.User
		if err := json.Unmarshal(l.Data, &u); err != nil {
			return err
		}
		st.Users++
		return dst.CreateUser(ctx, u)
	case "token":
		var t store.Token
		if err := json.Unmarshal(l.Data, &t); err != nil {
			return err
		}
		st.Tokens++
		return dst.PutToken(ctx, t)
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
