// Package audit keeps Tend's tamper-evident audit trail: who touched which
// patient's data, how, from where, and with what outcome.
//
// Every read, search, create, update, delete, export, sign-in, failure and
// denial involving PHI that reaches Tend over HTTP is recorded by Wrap, an
// HTTP middleware that fails closed: the handler's answer is held back
// until its record is stored, and replaced by a 500 without any of the body
// if storing fails. Event streams, which cannot be held back, are recorded
// before they start and refused if that fails.
//
// Records form a hash chain: each carries the SHA-256 of a canonical
// encoding of all its fields and of the previous record's hash, and the
// store keeps the head (last sequence number and hash) beside them in the
// same transaction. Verify walks the chain and names the first altered,
// inserted or deleted record, and a truncated tail. Someone able to
// rewrite every row and the head consistently can only be caught by
// comparing the head with a copy kept elsewhere: `tend audit verify`
// prints it so operators can record it outside Tend (an external anchor).
//
// Auditors read the records as FHIR AuditEvent resources (package fhir).
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// Action is what a record says happened.
type Action string

const (
	Read    Action = "read"
	Search  Action = "search"
	Create  Action = "create"
	Update  Action = "update"
	Delete  Action = "delete"
	Export  Action = "export"
	Login   Action = "login"
	Logout  Action = "logout"
	Failure Action = "failure" // the request failed (4xx other than 401/403, 5xx)
	Denial  Action = "denial"  // the caller was not authenticated or not allowed (401, 403)
)

// Outcome codes of FHIR AuditEvent.outcome.
const (
	Success        = 0
	MinorFailure   = 4
	SeriousFailure = 8
	MajorFailure   = 12
)

// Record is one entry of the trail (the store's type: every field is
// stored and hashed).
type Record = store.AuditEntry

// HashSize is the length of a record hash.
const HashSize = sha256.Size

// genesis is the PrevHash of the first record.
var genesis = make([]byte, HashSize)

// Hash returns the SHA-256 of r's canonical encoding, which covers every
// field except Hash itself. Strings are length-prefixed and integers fixed
// width, so no two different records encode alike.
func Hash(r Record) []byte {
	h := sha256.New()
	var b [8]byte
	num := func(v int64) {
		binary.BigEndian.PutUint64(b[:], uint64(v))
		h.Write(b[:])
	}
	str := func(s string) {
		num(int64(len(s)))
		h.Write([]byte(s))
	}
	str("tend-audit-v1")
	num(r.Seq)
	num(r.Time.UnixNano())
	str(r.Action)
	str(r.Subtype)
	num(int64(r.Outcome))
	num(int64(r.Status))
	str(r.Subject)
	str(r.Role)
	str(r.Org)
	str(r.Source)
	num(int64(len(r.Patients)))
	for _, p := range r.Patients {
		str(p)
	}
	str(r.Entity)
	str(r.Query)
	str(string(r.PrevHash))
	if r.Purpose != "" {
		// Hashed only when set: records from before purposes existed
		// keep their hashes, and the encoding stays unambiguous (the
		// field is last and length-prefixed).
		str(r.Purpose)
	}
	return h.Sum(nil)
}

// Log appends records to the trail of one store. It is safe for
// concurrent use, also by several processes sharing the store.
type Log struct {
	store store.AuditStore
	now   func() time.Time
	// mu keeps this process's appends from queueing on the store's lock
	// with open transactions; the store's lock is what guarantees order.
	mu sync.Mutex
}

// New returns a log over s; now stamps the records (time.Now when nil).
func New(s store.AuditStore, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{store: s, now: now}
}

// ErrNoLog is returned by Append on a nil Log: auditing is required.
var ErrNoLog = errors.New("audit: no audit log configured")

// Append stamps rec with the time, the next sequence number and the chain
// hashes and stores it; it returns the stored record. Patients are
// de-duplicated and sorted so equal sets hash alike.
func (l *Log) Append(ctx context.Context, rec Record) (Record, error) {
	if l == nil {
		return Record{}, ErrNoLog
	}
	rec.Time = l.now().UTC()
	rec.Patients = normalise(rec.Patients)
	l.mu.Lock()
	defer l.mu.Unlock()
	out, err := l.store.AppendAudit(ctx, func(head store.AuditHead) (store.AuditEntry, error) {
		r := rec
		r.Seq = head.Seq + 1
		r.PrevHash = head.Hash
		if head.Seq == 0 {
			r.PrevHash = genesis
		}
		r.Hash = Hash(r)
		return r, nil
	})
	if err != nil {
		return Record{}, fmt.Errorf("audit: append: %w", err)
	}
	return out, nil
}

// Store is the store the log writes to (for readers of the trail).
func (l *Log) Store() store.AuditStore { return l.store }

func normalise(ps []string) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		if p != "" {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil
	}
	return out
}
