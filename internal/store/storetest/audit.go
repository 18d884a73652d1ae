package storetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/store"
)

// link builds the next entry of a chain the way package audit does, with
// a stand-in hash (the store does not interpret hashes).
func link(e store.AuditEntry) func(store.AuditHead) (store.AuditEntry, error) {
	return func(h store.AuditHead) (store.AuditEntry, error) {
		e.Seq = h.Seq + 1
		e.PrevHash = h.Hash
		if h.Seq == 0 {
			e.PrevHash = make([]byte, 32)
		}
		sum := sha256.Sum256(fmt.Appendf(nil, "%d%x", e.Seq, e.PrevHash))
		e.Hash = sum[:]
		return e, nil
	}
}

func testAuditChain(t *testing.T, s store.Store) {
	h, err := s.AuditHead(ctx(t))
	must(t, err, "empty head")
	if h.Seq != 0 || h.Hash != nil {
		t.Fatalf("empty trail head = %+v", h)
	}
	_, err = s.AuditEntry(ctx(t), 1)
	wantErr(t, err, store.ErrNotFound, "entry of an empty trail")

	e1 := store.AuditEntry{Time: t0, Action: "read", Subtype: "read", Outcome: 0, Status: 200, Subject: "nurse1", Role: "nurse",
		Org: "default", Source: "192.0.2.7", Patients: []string{"p2", "p1"}, Entity: "Patient/p1", Query: "patient=p1&code=x%7Cy"}
	got1, err := s.AppendAudit(ctx(t), link(e1))
	must(t, err, "append 1")
	if got1.Seq != 1 {
		t.Fatalf("first seq = %d", got1.Seq)
	}
	got2, err := s.AppendAudit(ctx(t), link(store.AuditEntry{Time: t0.Add(time.Second), Action: "denial", Status: 403, Outcome: 4}))
	must(t, err, "append 2")

	stored, err := s.AuditEntry(ctx(t), 1)
	must(t, err, "entry 1")
	if diff := cmp.Diff(got1, stored); diff != "" {
		t.Errorf("entry 1 round trip (-appended +stored):\n%s", diff)
	}
	h, err = s.AuditHead(ctx(t))
	must(t, err, "head")
	if h.Seq != 2 || string(h.Hash) != string(got2.Hash) {
		t.Errorf("head = %d %x, want 2 %x", h.Seq, h.Hash, got2.Hash)
	}

	// Entries that do not extend the head are refused, and nothing moves.
	bad := []struct {
		name  string
		build func(store.AuditHead) (store.AuditEntry, error)
	}{
		{"seq gap", func(h store.AuditHead) (store.AuditEntry, error) {
			e, _ := link(store.AuditEntry{Time: t0})(h)
			e.Seq++
			return e, nil
		}},
		{"wrong prev", func(h store.AuditHead) (store.AuditEntry, error) {
			e, _ := link(store.AuditEntry{Time: t0})(h)
			e.PrevHash = make([]byte, 32)
			return e, nil
		}},
		{"build error", func(store.AuditHead) (store.AuditEntry, error) { return store.AuditEntry{}, errors.New("no") }},
	}
	for _, b := range bad {
		if _, err := s.AppendAudit(ctx(t), b.build); err == nil {
			t.Errorf("%s: appended", b.name)
		}
	}
	if h2, _ := s.AuditHead(ctx(t)); h2.Seq != 2 {
		t.Errorf("head after refused appends = %d", h2.Seq)
	}
	all, err := s.AuditEntries(ctx(t), store.AuditQuery{})
	must(t, err, "entries")
	if len(all) != 2 {
		t.Errorf("entries = %d, want 2", len(all))
	}
}

func testAuditQuery(t *testing.T, s store.Store) {
	add := func(at time.Duration, subject string, patients ...string) {
		t.Helper()
		_, err := s.AppendAudit(ctx(t), link(store.AuditEntry{Time: t0.Add(at), Action: "read", Subject: subject, Patients: patients}))
		must(t, err, "append")
	}
	add(0, "alice", "p1")
	add(time.Minute, "bob", "p2", "p1")
	add(2*time.Minute, "alice")
	add(3*time.Minute, "bob", "p3")
	add(4*time.Minute, "alice", "p1")
	cases := []struct {
		name string
		q    store.AuditQuery
		want []int64
	}{
		{"all", store.AuditQuery{}, []int64{1, 2, 3, 4, 5}},
		{"patient", store.AuditQuery{Patient: "p1"}, []int64{1, 2, 5}},
		{"subject", store.AuditQuery{Subject: "bob"}, []int64{2, 4}},
		{"from", store.AuditQuery{From: t0.Add(2 * time.Minute)}, []int64{3, 4, 5}},
		{"to exclusive", store.AuditQuery{To: t0.Add(2 * time.Minute)}, []int64{1, 2}},
		{"after and limit", store.AuditQuery{AfterSeq: 1, Limit: 2}, []int64{2, 3}},
		{"patient and subject", store.AuditQuery{Patient: "p1", Subject: "alice"}, []int64{1, 5}},
		{"nothing", store.AuditQuery{Patient: "nobody"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es, err := s.AuditEntries(ctx(t), tc.q)
			must(t, err, "query")
			var seqs []int64
			for _, e := range es {
				seqs = append(seqs, e.Seq)
			}
			if diff := cmp.Diff(tc.want, seqs); diff != "" {
				t.Errorf("seqs (-want +got):\n%s", diff)
			}
		})
	}
	e2, err := s.AuditEntry(ctx(t), 2)
	must(t, err, "entry 2")
	if diff := cmp.Diff([]string{"p2", "p1"}, e2.Patients); diff != "" {
		t.Errorf("patients keep their order (-want +got):\n%s", diff)
	}
}

// testAuditConcurrent: appends from many goroutines make one chain with
// no gaps and every link intact.
func testAuditConcurrent(t *testing.T, s store.Store) {
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.AppendAudit(ctx(t), link(store.AuditEntry{Time: t0, Action: "read", Subject: fmt.Sprint(i)}))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err, "concurrent append")
	}
	es, err := s.AuditEntries(ctx(t), store.AuditQuery{})
	must(t, err, "entries")
	if len(es) != n {
		t.Fatalf("entries = %d, want %d", len(es), n)
	}
	prev := make([]byte, 32)
	for i, e := range es {
		if e.Seq != int64(i+1) || string(e.PrevHash) != string(prev) {
			t.Fatalf("entry %d: seq %d, prev %x, want prev %x", i, e.Seq, e.PrevHash, prev)
		}
		prev = e.Hash
	}
}
