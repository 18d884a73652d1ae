package web

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

func doseEvent(patient, device, code string, v float64, at time.Time) reading.Reading {
	return reading.Reading{Patient: patient, Device: device, Code: code, Value: v, HasValue: true, Time: at, Source: "test"}
}

const hostileDevice = `disp"><script>alert(1)</script>`

// TestPatientPageAdherence: doses taken and missed over 7 and 30 days and
// the last missed doses, from a real store; nothing for a patient without
// a dispenser; a hint for one whose dispenser went quiet; nothing for a
// user who may not see the patient.
func TestPatientPageAdherence(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := epoch.Add(40 * 24 * time.Hour)
	f.set(now)
	day := 24 * time.Hour
	f.patient(t, "p1", "Pat One")
	f.patient(t, "p2", "Pip Two")   // vitals only
	f.patient(t, "p3", "Pam Three") // dispenser silent for five weeks
	var rs []reading.Reading
	for i := range 5 { // this week: 5 taken
		rs = append(rs, doseEvent("p1", "disp-1", codes.DoseTaken, 1, now.Add(-time.Duration(i)*day-time.Hour)))
	}
	for i := range 10 { // earlier this month: 10 taken
		rs = append(rs, doseEvent("p1", "disp-1", codes.DoseTaken, 1, now.Add(-time.Duration(8+i)*day)))
	}
	for i := range 3 { // before the month: not counted
		rs = append(rs, doseEvent("p1", "disp-1", codes.DoseTaken, 1, now.Add(-time.Duration(31+i)*day)))
	}
	missed := []time.Time{now.Add(-2 * time.Hour), now.Add(-3*day - 30*time.Minute), now.Add(-20 * day)}
	rs = append(rs,
		doseEvent("p1", "disp-1", codes.DoseMissed, 1, missed[0]),
		doseEvent("p1", hostileDevice, codes.DoseMissed, 1, missed[1]),
		doseEvent("p1", "disp-1", codes.DoseMissed, 1, missed[2]),
		doseEvent("p1", "disp-1", codes.DoseMissed, 0, now.Add(-4*day)), // a cleared flag is no missed dose
		doseEvent("p1", "disp-1", codes.DoseMissed, 1, now.Add(-35*day)),
		vitalReading("p2", codes.HeartRate, 70, now.Add(-time.Minute)),
		doseEvent("p3", "disp-3", codes.DoseTaken, 1, now.Add(-35*day)),
	)
	f.readings(t, rs...)

	ann := f.signedIn(t, "ann", adminPass)
	resp, body := ann.get("/patients/p1")
	if resp.StatusCode != 200 {
		t.Fatalf("patient page: %d", resp.StatusCode)
	}
	section := regexp.MustCompile(`(?s)<section aria-labelledby="adherence-h".*?</section>`).FindString(body)
	if section == "" {
		t.Fatal("no adherence section for a patient with dose events")
	}
	rows := regexp.MustCompile(`<tr><th scope="row">([^<]+)</th><td>(\d+)</td><td>(\d+)</td><td>([^<]+)</td></tr>`).FindAllStringSubmatch(section, -1)
	var got []string
	for _, r := range rows {
		got = append(got, strings.Join(r[1:], "|"))
	}
	// Week 5 taken, 2 missed: 71 %; month 15 taken, 3 missed: 83 %.
	if want := "Last 7 days|5|2|71 %,Last 30 days|15|3|83 %"; strings.Join(got, ",") != want {
		t.Errorf("counts %q, want %q", strings.Join(got, ","), want)
	}
	times := regexp.MustCompile(`<li><time datetime="([^"]+)">`).FindAllStringSubmatch(section, -1)
	var gotTimes []string
	for _, m := range times {
		gotTimes = append(gotTimes, m[1])
	}
	var wantTimes []string
	for _, m := range missed {
		wantTimes = append(wantTimes, m.UTC().Format(time.RFC3339))
	}
	if strings.Join(gotTimes, ",") != strings.Join(wantTimes, ",") {
		t.Errorf("missed doses %q, want newest first %q", gotTimes, wantTimes)
	}
	if strings.Contains(body, "<script>alert(1)") || !strings.Contains(section, "disp&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the device id is not escaped: %s", section)
	}
	if regexp.MustCompile(`<script|\son\w+=`).MatchString(section) {
		t.Errorf("script in the adherence section: %s", section)
	}

	if _, body := ann.get("/patients/p2"); strings.Contains(body, "adherence-h") {
		t.Error("an adherence section for a patient without a dispenser")
	}
	_, body = ann.get("/patients/p3")
	if !strings.Contains(body, "No doses recorded in the last 30 days") || !strings.Contains(body, now.Add(-35*day).UTC().Format(time.RFC3339)) {
		t.Error("a silent dispenser is not shown with its last event")
	}

	// A nurse of p2's team sees p2's page and nothing of p1's doses.
	scopedHashOnce.Do(func() { scopedHash = auth.HashPassword(scopedPass) })
	if err := f.st.CreateUser(ctx, store.User{ID: "nina", Name: "Nina", Role: store.RoleNurse, PasswordHash: scopedHash, Created: epoch}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.CreateCareTeam(ctx, store.CareTeam{ID: "t2", Org: store.DefaultOrg, Name: "t2"}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.SetCareTeamMember(ctx, "t2", "nina", true); err != nil {
		t.Fatal(err)
	}
	if err := f.st.SetCareTeamPatient(ctx, "t2", "p2", true); err != nil {
		t.Fatal(err)
	}
	nina := f.signedIn(t, "nina", scopedPass)
	resp, body = nina.get("/patients/p1")
	if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "adherence") || strings.Contains(body, "disp-1") {
		t.Errorf("a nurse outside p1's team: %d, adherence shown %v", resp.StatusCode, strings.Contains(body, "adherence"))
	}
	if resp, _ := nina.get("/patients/p2"); resp.StatusCode != 200 {
		t.Errorf("the nurse's own patient: %d", resp.StatusCode)
	}
}

func TestDosePercent(t *testing.T) {
	for _, tc := range []struct {
		c    doseCount
		want int
	}{
		{doseCount{}, -1},
		{doseCount{Taken: 3}, 100},
		{doseCount{Missed: 2}, 0},
		{doseCount{Taken: 5, Missed: 2}, 71},
		{doseCount{Taken: 249, Missed: 1}, 99}, // 99.6 %: not yet everything
	} {
		if got := tc.c.Percent(); got != tc.want {
			t.Errorf("%+v: %d, want %d", tc.c, got, tc.want)
		}
	}
}
