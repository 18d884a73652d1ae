package audit_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/postgres"
	"github.com/tendhealth/tend/internal/store/postgres/pgtest"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

// backend is a real store with a raw connection to tamper with it.
type backend struct {
	name string
	open func(t testing.TB) (store.Store, func(query string) error)
}

var backends = []backend{
	{"sqlite", func(t testing.TB) (store.Store, func(string) error) {
		path := filepath.Join(t.TempDir(), "tend.db")
		s, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return s, func(q string) error { _, err := db.Exec(q); return err }
	}},
	{"postgres", func(t testing.TB) (store.Store, func(string) error) {
		u := pgtest.Schema(t, postgres.Redact)
		s, err := postgres.Open(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		c, err := pgx.Connect(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return s, func(q string) error { _, err := c.Exec(context.Background(), q); return err }
	}},
}

const chainLen = 6

// fill appends chainLen varied records.
func fill(t *testing.T, s store.Store) *audit.Log {
	t.Helper()
	now := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	log := audit.New(s, func() time.Time { now = now.Add(time.Second); return now })
	recs := []audit.Record{
		{Action: "login", Subtype: "login", Status: 201, Subject: "nurse1", Role: "nurse", Source: "192.0.2.1"},
		{Action: "read", Subtype: "read", Status: 200, Subject: "nurse1", Role: "nurse", Org: "default", Source: "192.0.2.1", Patients: []string{"p1"}, Entity: "Patient/p1"},
		{Action: "search", Subtype: "search-type", Status: 200, Subject: "nurse1", Patients: []string{"p1", "p2"}, Entity: "Observation", Query: "patient=p1&code=http://loinc.org|8867-4"},
		{Action: "denial", Subtype: "read", Status: 403, Outcome: 4, Subject: "cg", Role: "caregiver", Patients: []string{"p3"}, Entity: "Patient/p3"},
		{Action: "update", Subtype: "ack", Status: 200, Subject: "nurse1", Patients: []string{"p2"}, Entity: "/api/v1/alarms/a1/ack"},
		{Action: "failure", Subtype: "read", Status: 404, Outcome: 4, Subject: "nurse1", Entity: "Patient/nope"},
	}
	for _, r := range recs {
		if _, err := log.Append(t.Context(), r); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	return log
}

func verify(t *testing.T, s store.Store) audit.Result {
	t.Helper()
	res, err := audit.Verify(t.Context(), s)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return res
}

func TestVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name    string
		sql     []string
		seq     int64
		kind    string
		setHead bool
	}{
		{"update a field", []string{`UPDATE audit_log SET subject = 'mallory' WHERE seq = 3`}, 3, audit.Altered, false},
		{"update the time", []string{`UPDATE audit_log SET t_ns = t_ns - 1 WHERE seq = 2`}, 2, audit.Altered, false},
		{"change a patient", []string{`UPDATE audit_patients SET patient = 'p9' WHERE seq = 2`}, 2, audit.Altered, false},
		{"add a patient", []string{`INSERT INTO audit_patients(seq, idx, patient) VALUES (5, 7, 'p9')`}, 5, audit.Altered, false},
		{"remove a patient", []string{`DELETE FROM audit_patients WHERE seq = 3 AND idx = 1`}, 3, audit.Altered, false},
		{"delete a middle row", []string{`DELETE FROM audit_log WHERE seq = 3`}, 3, audit.Missing, false},
		{"delete the first row", []string{`DELETE FROM audit_log WHERE seq = 1`}, 1, audit.Missing, false},
		{"insert a row after the head", []string{`INSERT INTO audit_log SELECT 7, t_ns, action, subtype, outcome, status, 'mallory', role, org, source, entity, query, hash, hash, purpose FROM audit_log WHERE seq = 6`}, 7, audit.Beyond, false},
		{"insert a row in the middle", []string{
			`UPDATE audit_log SET seq = seq + 100 WHERE seq >= 4`,
			`UPDATE audit_log SET seq = seq - 99 WHERE seq >= 100`,
			`INSERT INTO audit_log SELECT 4, t_ns, action, subtype, outcome, status, subject, role, org, source, entity, query, prev_hash, hash, purpose FROM audit_log WHERE seq = 3`,
		}, 4, audit.Altered, false},
		{"delete the last row", []string{`DELETE FROM audit_log WHERE seq = 6`}, 6, audit.Truncated, false},
		{"reorder two rows", []string{
			`UPDATE audit_log SET seq = -2 WHERE seq = 2`,
			`UPDATE audit_log SET seq = 2 WHERE seq = 3`,
			`UPDATE audit_log SET seq = 3 WHERE seq = -2`,
		}, 2, audit.Altered, false},
		{"replace a hash", []string{`UPDATE audit_log SET hash = prev_hash WHERE seq = 4`}, 4, audit.Altered, false},
		{"move the head", []string{`UPDATE audit_head SET hash = (SELECT prev_hash FROM audit_log WHERE seq = 6)`}, 6, audit.Altered, false},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					s, exec := b.open(t)
					fill(t, s)
					if res := verify(t, s); res.Problem != nil || res.Count != chainLen {
						t.Fatalf("intact chain: %+v", res)
					}
					for _, q := range tc.sql {
						if err := exec(q); err != nil {
							t.Fatalf("tamper %q: %v", q, err)
						}
					}
					res := verify(t, s)
					if res.Problem == nil {
						t.Fatalf("tampering not detected (count %d)", res.Count)
					}
					if res.Problem.Seq != tc.seq || res.Problem.Kind != tc.kind {
						t.Errorf("problem = %v (%s at %d), want %s at %d", res.Problem, res.Problem.Kind, res.Problem.Seq, tc.kind, tc.seq)
					}
				})
			}
		})
	}
}

// TestVerifyRandomEdits changes one column of a random record at a time;
// every change must be found at that record.
func TestVerifyRandomEdits(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	edits := []string{
		"t_ns = t_ns + 1", "action = action || 'x'", "subtype = 'x' || subtype", "outcome = outcome + 4", "status = status + 1",
		"subject = subject || 'x'", "role = 'admin'", "org = org || 'x'", "source = '198.51.100.1'", "entity = entity || '/x'",
		"query = query || '&x=1'", "prev_hash = hash", "hash = prev_hash",
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s, exec := b.open(t)
			fill(t, s)
			for _, edit := range edits {
				seq := 1 + rng.Int64N(chainLen)
				if err := exec(fmt.Sprintf(`UPDATE audit_log SET %s WHERE seq = %d`, edit, seq)); err != nil {
					t.Fatalf("tamper: %v", err)
				}
				res := verify(t, s)
				if res.Problem == nil || res.Problem.Seq != seq {
					t.Errorf("SET %s at %d: problem %v", edit, seq, res.Problem)
				}
				// Put the record back from a fresh chain would need the
				// original; start over instead.
				s, exec = b.open(t)
				fill(t, s)
			}
		})
	}
}

// TestVerifyHeadRollback: deleting the tail and rolling the head back with
// it is consistent, so Verify passes, but the head hash changed: only a
// copy of the head kept outside Tend shows it.
func TestVerifyHeadRollback(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s, exec := b.open(t)
			fill(t, s)
			before := verify(t, s)
			for _, q := range []string{`DELETE FROM audit_log WHERE seq = 6`,
				`UPDATE audit_head SET seq = 5, hash = (SELECT hash FROM audit_log WHERE seq = 5)`} {
				if err := exec(q); err != nil {
					t.Fatal(err)
				}
			}
			after := verify(t, s)
			if after.Problem != nil || after.Count != 5 {
				t.Fatalf("after a consistent rollback: %+v", after)
			}
			if after.HeadHex() == before.HeadHex() {
				t.Error("head hash unchanged by the rollback")
			}
		})
	}
}

// TestAppendForgedInsert: a forger who knows the hash function inserts a
// valid-looking record and renumbers the rest; the first renumbered record
// no longer matches its hash.
func TestAppendForgedInsert(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s, exec := b.open(t)
			fill(t, s)
			r3, err := s.AuditEntry(t.Context(), 3)
			if err != nil {
				t.Fatal(err)
			}
			forged := audit.Record{Seq: 4, Time: r3.Time.Add(time.Millisecond), Action: "read", Subject: "mallory", PrevHash: r3.Hash}
			forged.Hash = audit.Hash(forged)
			for _, q := range []string{
				`UPDATE audit_log SET seq = seq + 100 WHERE seq >= 4`,
				`UPDATE audit_log SET seq = seq - 99 WHERE seq >= 100`,
				`UPDATE audit_patients SET seq = seq + 100 WHERE seq >= 4`,
				`UPDATE audit_patients SET seq = seq - 99 WHERE seq >= 100`,
				fmt.Sprintf(`INSERT INTO audit_log VALUES (4, %d, 'read', '', 0, 0, 'mallory', '', '', '', '', '', %s, %s, '')`,
					forged.Time.UnixNano(), hexLit(b.name, forged.PrevHash), hexLit(b.name, forged.Hash)),
				`UPDATE audit_head SET seq = 7, hash = (SELECT hash FROM audit_log WHERE seq = 7)`,
			} {
				if err := exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			res := verify(t, s)
			if res.Problem == nil || res.Problem.Seq != 5 || res.Problem.Kind != audit.Altered {
				t.Errorf("problem = %v, want record 5 altered", res.Problem)
			}
		})
	}
}

func hexLit(backend string, b []byte) string {
	if backend == "postgres" {
		return fmt.Sprintf(`'\x%x'::bytea`, b)
	}
	return fmt.Sprintf(`X'%x'`, b)
}

// TestTwoNodesOneChain: two stores on one PostgreSQL schema, as two Tend
// nodes have, append at once; the chain must not fork.
func TestTwoNodesOneChain(t *testing.T) {
	u := pgtest.Schema(t, postgres.Redact)
	var logs []*audit.Log
	var stores []store.Store
	for range 2 {
		s, err := postgres.Open(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
		logs = append(logs, audit.New(s, nil))
	}
	const each = 30
	errs := make(chan error, 2*each)
	for i, l := range logs {
		for j := range each {
			go func() {
				_, err := l.Append(t.Context(), audit.Record{Action: "read", Subject: fmt.Sprintf("node%d-%d", i, j)})
				errs <- err
			}()
		}
	}
	for range 2 * each {
		if err := <-errs; err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	res := verify(t, stores[0])
	if res.Problem != nil || res.Count != 2*each {
		t.Errorf("after concurrent appends from two nodes: count %d, problem %v", res.Count, res.Problem)
	}
}
