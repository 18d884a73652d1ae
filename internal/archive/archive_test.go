package archive

import (
	"bytes"
	"compress/gzip"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

type installation struct {
	st *sqlite.Store
	al *alarmdb.DB
}

func newInstallation(t *testing.T) installation {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	al, err := alarmdb.Open(filepath.Join(dir, "alarms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	return installation{st, al}
}

var t0 = time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)

// exportOf makes a small installation: a device bound to p1, then
// unbound, then bound to p2, with readings of both periods.
func exportOf(t *testing.T) ([]byte, Stats) {
	t.Helper()
	ctx := context.Background()
	in := newInstallation(t)
	for _, id := range []string{"p1", "p2"} {
		if err := in.st.CreatePatient(ctx, &store.Patient{ID: id, Resource: []byte(`{"resourceType":"Patient"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	d := &store.Device{ID: "d1", Patient: "p1"}
	if err := in.st.CreateDevice(ctx, d, t0); err != nil {
		t.Fatal(err)
	}
	d.Patient = ""
	if err := in.st.UpdateDevice(ctx, d, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	d.Patient = "p2"
	if err := in.st.UpdateDevice(ctx, d, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var rs []reading.Reading
	for i := range 12000 { // more than one page of each patient
		p, at := "p1", t0.Add(time.Duration(i)*100*time.Millisecond)
		if i%2 == 1 {
			p, at = "p2", t0.Add(2*time.Hour+time.Duration(i)*100*time.Millisecond)
		}
		rs = append(rs, reading.Reading{Patient: p, Device: "d1", Code: "8867-4", Value: float64(60 + i%40), HasValue: true,
			Unit: "/min", Time: at, Received: at, Source: "test"})
	}
	if _, err := in.st.Append(ctx, rs); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	st, err := Export(ctx, in.st, in.al, &buf, Options{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), st
}

func TestRoundTrip(t *testing.T) {
	file, exported := exportOf(t)
	if exported.Readings != 12000 || exported.Patients != 2 || exported.Devices != 1 {
		t.Fatalf("exported %+v", exported)
	}
	ctx := context.Background()
	in := newInstallation(t)
	imported, err := Import(ctx, bytes.NewReader(file), in.st, in.al, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if imported != exported {
		t.Fatalf("imported %+v, exported %+v", imported, exported)
	}
	bs, err := in.st.Bindings(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].Patient != "p1" || !bs[0].To.Equal(t0.Add(time.Hour)) || bs[1].Patient != "p2" || !bs[1].From.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("binding history after import: %+v", bs)
	}
	for _, p := range []string{"p1", "p2"} {
		if n, err := in.st.CountSamples(ctx, store.Query{Patient: p}); err != nil || n != 6000 {
			t.Errorf("%s: %d readings after import (%v), want 6000", p, n, err)
		}
	}
}

func TestImportRefusesBadFiles(t *testing.T) {
	file, _ := exportOf(t)
	plain := func(lines ...string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(strings.Join(lines, "\n") + "\n"))
		zw.Close()
		return b.Bytes()
	}
	for _, tt := range []struct {
		name string
		file []byte
		want string
	}{
		{"not gzip", []byte("hello"), "not a Tend export"},
		{"truncated", file[:len(file)/2], ""},
		{"no header", plain(`{"kind":"patient","data":{}}`), "no header"},
		{"newer format", plain(`{"format":"tend-export","version":99}`), "version 99 was written by a newer tend"},
		{"format version 0", plain(`{"format":"tend-export","version":0}`), "not a version any tend wrote"},
		{"no end record", plain(`{"format":"tend-export","version":1}`), "truncated"},
		{"unknown record", plain(`{"format":"tend-export","version":1}`, `{"kind":"spaceship","data":{}}`), "unknown record kind"},
		{"bad record", plain(`{"format":"tend-export","version":1}`, `{"kind":"patient","data":{"ID":""}}`), "line 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := newInstallation(t)
			_, err := Import(context.Background(), bytes.NewReader(tt.file), in.st, in.al, ImportOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Import: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
