package store

import (
	"context"
	"time"
)

// ExportState is where a FHIR Bulk Data export job is.
type ExportState string

// Export job states.
const (
	ExportQueued  ExportState = "queued"
	ExportRunning ExportState = "running"
	ExportDone    ExportState = "done"
	ExportFailed  ExportState = "failed"
)

// ExportJob is one FHIR Bulk Data export. Jobs and their files live in the
// store so that any node answers the status URL and serves the files.
type ExportJob struct {
	ID string
	// Owner and Org identify the principal that started the job: only
	// the same subject in the same organisation may see it.
	Owner     string
	Org       string
	Principal []byte // the principal as the kick-off saw it (JSON), to scope the run
	Request   string // the kick-off request URL
	Params    []byte // what to export (JSON, defined by the exporter)
	State     ExportState
	Progress  string
	Error     string // user-facing reason when State is ExportFailed
	// TransactionTime is when the run began reading: the export holds
	// what was committed by then.
	TransactionTime time.Time
	Created         time.Time
	Expires         time.Time // the job and its files are deleted after
	LeaseUntil      time.Time // a running job whose lease ended is claimed again
}

// ExportFile is one NDJSON output file of a job.
type ExportFile struct {
	Job   string
	Name  string // unique within the job, e.g. "Observation-0001.ndjson"
	Type  string // FHIR resource type of every line
	Count int    // lines
	Body  []byte
}

// ExportStore keeps FHIR Bulk Data export jobs and their output.
type ExportStore interface {
	CreateExportJob(ctx context.Context, j ExportJob) error // ErrConflict if the id exists
	ExportJob(ctx context.Context, id string) (ExportJob, error)
	// ClaimExportJob leases the oldest queued job, or a running one whose
	// lease ended before now (its node stopped), until now+lease and marks
	// it running; a reclaimed job's files are deleted so the run starts
	// over. ok is false when there is none.
	ClaimExportJob(ctx context.Context, now time.Time, lease time.Duration) (j ExportJob, ok bool, err error)
	// UpdateExportJob writes State, Progress, Error, TransactionTime and
	// LeaseUntil (ErrNotFound if the job was deleted meanwhile).
	UpdateExportJob(ctx context.Context, j ExportJob) error
	PutExportFile(ctx context.Context, f ExportFile) error
	ExportFile(ctx context.Context, job, name string) (ExportFile, error)
	// ExportFiles lists a job's files without their bodies, ordered by name.
	ExportFiles(ctx context.Context, job string) ([]ExportFile, error)
	// DeleteExportJob deletes a job and its files (ErrNotFound if none).
	DeleteExportJob(ctx context.Context, id string) error
	// DeleteExpiredExportJobs deletes the jobs (and files) expired by now.
	DeleteExpiredExportJobs(ctx context.Context, now time.Time) (int, error)
}
