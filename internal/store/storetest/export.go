package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/store"
)

var exportCases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"ExportJobs", testExportJobs},
	{"ExportClaim", testExportClaim},
	{"ExportClaimConcurrent", testExportClaimConcurrent},
	{"ExportExpiry", testExportExpiry},
}

func exportJob(id string, created time.Time) store.ExportJob {
	return store.ExportJob{ID: id, Owner: "ehr", Org: "north", Principal: []byte(`{"sub":"ehr"}`), Request: "https://tend.example/fhir/$export",
		Params: []byte(`{"types":["Patient"]}`), State: store.ExportQueued, Created: created, Expires: created.Add(time.Hour)}
}

func testExportJobs(t *testing.T, s store.Store) {
	j := exportJob("j1", t0)
	must(t, s.CreateExportJob(ctx(t), j), "create")
	wantErr(t, s.CreateExportJob(ctx(t), j), store.ErrConflict, "create existing id")
	got, err := s.ExportJob(ctx(t), "j1")
	must(t, err, "get")
	if diff := cmp.Diff(j, got); diff != "" {
		t.Fatalf("job (-want +got):\n%s", diff)
	}
	_, err = s.ExportJob(ctx(t), "nope")
	wantErr(t, err, store.ErrNotFound, "unknown job")

	j.State, j.Progress, j.TransactionTime, j.LeaseUntil = store.ExportDone, "3 of 3 patients", t0.Add(time.Second), t0.Add(time.Minute)
	must(t, s.UpdateExportJob(ctx(t), j), "update")
	got, err = s.ExportJob(ctx(t), "j1")
	must(t, err, "get after update")
	if diff := cmp.Diff(j, got); diff != "" {
		t.Fatalf("updated job (-want +got):\n%s", diff)
	}
	wantErr(t, s.UpdateExportJob(ctx(t), exportJob("nope", t0)), store.ErrNotFound, "update unknown job")

	files := []store.ExportFile{
		{Job: "j1", Name: "Patient-0001.ndjson", Type: "Patient", Count: 2, Body: []byte("{}\n{}\n")},
		{Job: "j1", Name: "Observation-0001.ndjson", Type: "Observation", Count: 1, Body: []byte("{}\n")},
	}
	for _, f := range files {
		must(t, s.PutExportFile(ctx(t), f), "put file "+f.Name)
	}
	wantErr(t, s.PutExportFile(ctx(t), store.ExportFile{Job: "nope", Name: "x", Type: "Patient", Body: []byte("{}\n")}), store.ErrNotFound, "file of unknown job")
	f, err := s.ExportFile(ctx(t), "j1", "Patient-0001.ndjson")
	must(t, err, "get file")
	if diff := cmp.Diff(files[0], f); diff != "" {
		t.Fatalf("file (-want +got):\n%s", diff)
	}
	list, err := s.ExportFiles(ctx(t), "j1")
	must(t, err, "list files")
	want := []store.ExportFile{{Job: "j1", Name: "Observation-0001.ndjson", Type: "Observation", Count: 1}, {Job: "j1", Name: "Patient-0001.ndjson", Type: "Patient", Count: 2}}
	if diff := cmp.Diff(want, list); diff != "" {
		t.Fatalf("files (-want +got):\n%s", diff)
	}
	must(t, s.DeleteExportJob(ctx(t), "j1"), "delete")
	wantErr(t, s.DeleteExportJob(ctx(t), "j1"), store.ErrNotFound, "delete twice")
	_, err = s.ExportFile(ctx(t), "j1", "Patient-0001.ndjson")
	wantErr(t, err, store.ErrNotFound, "file of a deleted job")
	// A new job under the same id does not inherit the old files.
	must(t, s.CreateExportJob(ctx(t), exportJob("j1", t0)), "recreate")
	list, err = s.ExportFiles(ctx(t), "j1")
	must(t, err, "list files of recreated job")
	if len(list) != 0 {
		t.Fatalf("recreated job has files %v", list)
	}
}

func testExportClaim(t *testing.T, s store.Store) {
	must(t, s.CreateExportJob(ctx(t), exportJob("late", t0.Add(time.Second))), "create late")
	must(t, s.CreateExportJob(ctx(t), exportJob("early", t0)), "create early")
	lease := time.Minute
	j, ok, err := s.ClaimExportJob(ctx(t), t0, lease)
	must(t, err, "claim 1")
	if !ok || j.ID != "early" || j.State != store.ExportRunning || !j.LeaseUntil.Equal(t0.Add(lease)) {
		t.Fatalf("claim 1 = %+v, %v; want early, running, leased", j, ok)
	}
	must(t, s.PutExportFile(ctx(t), store.ExportFile{Job: "early", Name: "Patient-0001.ndjson", Type: "Patient", Count: 1, Body: []byte("{}\n")}), "put file")
	j, ok, err = s.ClaimExportJob(ctx(t), t0, lease)
	must(t, err, "claim 2")
	if !ok || j.ID != "late" {
		t.Fatalf("claim 2 = %+v, %v; want late", j, ok)
	}
	if _, ok, err = s.ClaimExportJob(ctx(t), t0.Add(lease), lease); err != nil || ok {
		t.Fatalf("claim while leased: ok=%v err=%v, want none", ok, err)
	}
	// early finishes; late's node stops and its lease runs out.
	done, err := s.ExportJob(ctx(t), "early")
	must(t, err, "get early")
	done.State = store.ExportDone
	must(t, s.UpdateExportJob(ctx(t), done), "finish early")
	j, ok, err = s.ClaimExportJob(ctx(t), t0.Add(lease+time.Nanosecond), lease)
	must(t, err, "reclaim")
	if !ok || j.ID != "late" || !j.LeaseUntil.Equal(t0.Add(2*lease+time.Nanosecond)) {
		t.Fatalf("reclaim = %+v, %v; want late with a new lease", j, ok)
	}
	files, err := s.ExportFiles(ctx(t), "early")
	must(t, err, "files of the finished job")
	if len(files) != 1 {
		t.Fatalf("a finished job's files = %v, want kept", files)
	}
}

// testExportClaimConcurrent: every job is claimed exactly once however
// many claimers race.
func testExportClaimConcurrent(t *testing.T, s store.Store) {
	const jobs, claimers = 12, 4
	for i := range jobs {
		must(t, s.CreateExportJob(ctx(t), exportJob(fmt.Sprintf("j%02d", i), t0.Add(time.Duration(i)))), "create")
	}
	var (
		mu  sync.Mutex
		got = map[string]int{}
		wg  sync.WaitGroup
	)
	for range claimers {
		wg.Go(func() {
			for {
				j, ok, err := s.ClaimExportJob(ctx(t), t0, time.Hour)
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				if !ok {
					return
				}
				mu.Lock()
				got[j.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != jobs {
		t.Fatalf("claimed %d distinct jobs, want %d", len(got), jobs)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("job %s claimed %d times", id, n)
		}
	}
}

func testExportExpiry(t *testing.T, s store.Store) {
	old, fresh := exportJob("old", t0), exportJob("fresh", t0.Add(time.Hour))
	must(t, s.CreateExportJob(ctx(t), old), "create old")
	must(t, s.CreateExportJob(ctx(t), fresh), "create fresh")
	must(t, s.PutExportFile(ctx(t), store.ExportFile{Job: "old", Name: "Patient-0001.ndjson", Type: "Patient", Count: 1, Body: []byte("{}\n")}), "put file")
	n, err := s.DeleteExpiredExportJobs(ctx(t), old.Expires)
	must(t, err, "delete expired")
	if n != 1 {
		t.Fatalf("deleted %d jobs, want 1", n)
	}
	_, err = s.ExportJob(ctx(t), "old")
	wantErr(t, err, store.ErrNotFound, "expired job")
	_, err = s.ExportFile(ctx(t), "old", "Patient-0001.ndjson")
	wantErr(t, err, store.ErrNotFound, "expired job's file")
	_, err = s.ExportJob(ctx(t), "fresh")
	must(t, err, "fresh job kept")
}
