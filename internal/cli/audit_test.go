package cli

import (
	"bytes"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	s, err := sqlite.Open(filepath.Join(dir, "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	log := audit.New(s, nil)
	for _, subject := range []string{"a", "b", "c"} {
		if _, err := log.Append(t.Context(), audit.Record{Action: "read", Subject: subject, Patients: []string{"p1"}}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	run := func() (int, string) {
		var out, errOut bytes.Buffer
		rc := Run([]string{"audit", "verify", "--data", dir}, &out, &errOut)
		return rc, out.String() + errOut.String()
	}
	if rc, out := run(); rc != 0 || !strings.HasPrefix(out, "OK: 3 records, chain head ") {
		t.Fatalf("intact: %d %q", rc, out)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_log SET subject = 'x' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	if rc, out := run(); rc != 1 || !strings.Contains(out, "FAILED: record 2 was altered") {
		t.Errorf("tampered: %d %q", rc, out)
	}
	if rc, _ := func() (int, string) {
		var out, errOut bytes.Buffer
		return Run([]string{"audit"}, &out, &errOut), ""
	}(); rc != 2 {
		t.Errorf("tend audit without verify = %d, want 2", rc)
	}
}
