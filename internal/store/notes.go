package store

import (
	"context"
	"time"
)

// Note is a free-text entry on a patient's record by a member of their
// care (a clinician, nurse or caregiver). Notes are append-only: a
// correction is a new note, so the record shows what was read when.
type Note struct {
	ID      string
	Org     string
	Patient string
	Author  string // user id
	Role    Role   // the author's role when writing
	Text    string
	Created time.Time
}

// NoteStore keeps patient notes. It is embedded in Store.
type NoteStore interface {
	AddNote(ctx context.Context, n Note) error // ErrConflict if the id exists
	// Notes lists a patient's notes, newest first; limit 0 means all.
	Notes(ctx context.Context, patient string, limit int) ([]Note, error)
}

// OrgSettings changes an organisation's settings. It is embedded in Store.
type OrgSettings interface {
	// UpdateOrg sets the name and privacy officer of an existing
	// organisation (ErrNotFound otherwise); Created is kept.
	UpdateOrg(ctx context.Context, o Organisation) error
}
