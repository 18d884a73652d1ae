package web

import (
	"context"
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/store"
)

// Medication adherence on the patient page, from the dose events a pill
// dispenser sends: a scheduled dose taken from it (codes.DoseTaken) or its
// window passed without it (codes.DoseMissed). Only events that are set
// count (value 1, as the missed-dose rule reads them).

const (
	adherenceWeek  = 7 * 24 * time.Hour
	adherenceMonth = 30 * 24 * time.Hour
	// adherenceMaxEvents bounds the read: a dispenser with four doses a
	// day sends about 120 events a month, so hitting it means a device
	// gone wrong, and the page says the counts are incomplete.
	adherenceMaxEvents = 5000
	missedShown        = 10
)

var doseCodes = []string{codes.DoseTaken, codes.DoseMissed}

// doseCount is doses taken and missed over a window.
type doseCount struct {
	Taken, Missed int
}

// Percent is the share of scheduled doses taken, rounded down (a 99.6 %
// month is not "100 %"); -1 when no dose was scheduled.
func (c doseCount) Percent() int {
	if c.Taken+c.Missed == 0 {
		return -1
	}
	return c.Taken * 100 / (c.Taken + c.Missed)
}

type missedDose struct {
	Time   time.Time
	Device string
}

// adherenceView is what the patient page shows; nil for patients without
// dose events.
type adherenceView struct {
	Week, Month doseCount
	Missed      []missedDose // newest first, at most missedShown, within the month
	// Last is the newest dose event, shown when the month has none (a
	// dispenser that stopped reporting is itself worth seeing).
	Last   time.Time
	Capped bool // more than adherenceMaxEvents events in the month
}

// loadAdherence reads a patient's dose events; the caller has checked the
// user may see the patient.
func (h *Handler) loadAdherence(ctx context.Context, patient string, now time.Time) (*adherenceView, error) {
	ss, err := h.cfg.Store.Samples(ctx, store.Query{Patient: patient, Codes: doseCodes, From: now.Add(-adherenceMonth), Limit: adherenceMaxEvents})
	if err != nil {
		return nil, fmt.Errorf("dose events: %w", err)
	}
	if len(ss) == 0 {
		older, err := h.cfg.Store.Samples(ctx, store.Query{Patient: patient, Codes: doseCodes, Limit: 1})
		if err != nil {
			return nil, fmt.Errorf("last dose event: %w", err)
		}
		if len(older) == 0 {
			return nil, nil
		}
		return &adherenceView{Last: older[0].Time}, nil
	}
	v := &adherenceView{Last: ss[0].Time, Capped: len(ss) == adherenceMaxEvents}
	weekFrom := now.Add(-adherenceWeek)
	for _, s := range ss { // newest first
		if !s.HasValue || s.Value < 1 {
			continue
		}
		inWeek := !s.Time.Before(weekFrom)
		switch s.Code {
		case codes.DoseTaken:
			v.Month.Taken++
			if inWeek {
				v.Week.Taken++
			}
		case codes.DoseMissed:
			v.Month.Missed++
			if inWeek {
				v.Week.Missed++
			}
			if len(v.Missed) < missedShown {
				v.Missed = append(v.Missed, missedDose{Time: s.Time, Device: s.Device})
			}
		}
	}
	return v, nil
}
