package store

import (
	"context"
	"time"
)

// AuditEntry is one record of the tamper-evident audit trail as stored.
// Package audit assigns Seq, PrevHash and Hash and defines what the other
// fields mean; the store keeps every field verbatim so that the hash can
// be recomputed from what is stored.
type AuditEntry struct {
	Seq      int64 // 1, 2, 3, … with no gaps
	Time     time.Time
	Action   string // read, search, create, update, delete, export, login, logout, failure, denial
	Subtype  string // what was attempted (a FHIR interaction, "login", …)
	Outcome  int    // 0 success, 4 minor failure, 8 serious failure, 12 major failure
	Status   int    // HTTP status of the answer (401 for the dashboard's redirect to sign-in)
	Subject  string // who: user id, client id or token subject
	Role     string
	Org      string
	Source   string   // the client's network address
	Patients []string // whose data was involved; may be empty
	Entity   string   // the resource ("Patient/p1") or the endpoint path
	Query    string   // the request's query string, kept as sent
	Purpose  string   // purpose of use when not ordinary care: "BTG" (break-the-glass, HL7 v3 ActReason)
	PrevHash []byte   // Hash of record Seq-1 (32 zero bytes for the first)
	Hash     []byte
}

// AuditHead is the chain head kept beside the records, so a deleted tail
// is noticed. Seq 0 and a nil Hash mean the trail is empty.
type AuditHead struct {
	Seq  int64
	Hash []byte
}

// AuditQuery selects audit entries, oldest first.
type AuditQuery struct {
	Patient  string    // entries involving this patient; "" means any
	Subject  string    // entries by this agent; "" means any
	From     time.Time // inclusive; zero means unbounded
	To       time.Time // exclusive; zero means unbounded
	AfterSeq int64     // only entries with a greater Seq
	Limit    int       // 0 means no limit
}

// AuditStore keeps the audit trail. It is embedded in Store.
type AuditStore interface {
	// AppendAudit reads the chain head, calls build with it and stores the
	// entry build returns, advancing the head, in one transaction under a
	// lock that also excludes other processes sharing the store: two nodes
	// never fork the chain. The entry must have Seq head.Seq+1 and PrevHash
	// equal to head.Hash (32 zero bytes on an empty trail).
	AppendAudit(ctx context.Context, build func(head AuditHead) (AuditEntry, error)) (AuditEntry, error)
	AuditHead(ctx context.Context) (AuditHead, error)
	AuditEntries(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
	AuditEntry(ctx context.Context, seq int64) (AuditEntry, error) // ErrNotFound if absent
}
