package bench

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sampleResult() Result {
	return Result{
		Proto: "mqtt", Devices: 50, PerMessage: 10, Duration: 60 * time.Second,
		Acked: 1_234_560, AckedTotal: 1_300_000, Stored: 1_300_000, Rate: 20576,
		AckP50: 3200 * time.Microsecond, AckP99: 41 * time.Millisecond, AckMax: 1200 * time.Millisecond,
		StoredP50: 4 * time.Millisecond, StoredP99: 55500 * time.Microsecond,
		Baseline: &BaselineResult{Addr: "127.0.0.1:1883", Acked: 2_400_000, Rate: 40000, Ratio: 0.5144},
	}
}

func TestMarkdownGolden(t *testing.T) {
	baseline := Result{Proto: "baseline", Devices: 4, PerMessage: 10, Duration: time.Second,
		Acked: 500, Rate: 500, AckP50: 900 * time.Microsecond, AckP99: 2 * time.Millisecond, AckMax: 3 * time.Millisecond}
	lossy := sampleResult()
	lossy.Proto, lossy.Lost, lossy.Errors, lossy.StoredP50, lossy.StoredP99, lossy.Baseline = "http", 12, 3, 0, 0, nil

	dir := t.TempDir()
	path := filepath.Join(dir, "BENCHMARKS.md")
	rows := []string{
		sampleResult().Markdown("2026-11-23", "abc1234", "2 cores, 24 GiB", "tend bench --devices 50 | tee x"),
		baseline.Markdown("2026-11-23", "abc1234", "2 cores, 24 GiB", "tend bench --baseline-only"),
		lossy.Markdown("2026-11-23", "", "line\nbreak", "tend bench --proto `http`"),
	}
	for _, r := range rows {
		if err := AppendToFile(path, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "benchmarks.golden.md")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("BENCHMARKS.md differs from %s (run with -update after checking):\n%s", golden, got)
	}
	nCols := strings.Count(strings.SplitN(MarkdownHeader(), "\n", 2)[0], " | ") + 1
	for _, r := range rows {
		if n := strings.Count(r, " | ") + 1; n != nCols {
			t.Errorf("row has %d cells, header %d: %s", n, nCols, r)
		}
	}
}

func TestAppendToFileKeepsTablesWhole(t *testing.T) {
	row := sampleResult().Markdown("d", "c", "m", "cmd")
	h := MarkdownHeader()
	tests := []struct {
		name, before, want string
	}{
		{"appends to a trailing table", "# B\n\n" + h + "| old |\n", "# B\n\n" + h + "| old |\n" + row + "\n"},
		{"adds the missing newline", "# B\n\n" + h + "| old |", "# B\n\n" + h + "| old |\n" + row + "\n"},
		{"header with no rows yet", h, h + row + "\n"},
		{"text after the table starts a new one", h + "| old |\n\nNotes.\n", h + "| old |\n\nNotes.\n\n" + h + row + "\n"},
		{"blank line after the table starts a new one", h + "| old |\n\n", h + "| old |\n\n\n" + h + row + "\n"},
		{"other table only", "| a | b |\n|---|---|\n| 1 | 2 |\n", "| a | b |\n|---|---|\n| 1 | 2 |\n\n" + h + row + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
			if err := os.WriteFile(path, []byte(tt.before), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := AppendToFile(path, row); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
	t.Run("rejects a non-row", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
		for _, bad := range []string{"", "text", "| a |\n| b |"} {
			if err := AppendToFile(path, bad); err == nil {
				t.Errorf("AppendToFile(%q) succeeded", bad)
			}
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Error("a rejected row must not create the file")
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		err := AppendToFile(filepath.Join(t.TempDir(), "no", "such", "BENCHMARKS.md"), row)
		if err == nil || !strings.Contains(err.Error(), "BENCHMARKS.md") {
			t.Errorf("err = %v", err)
		}
	})
}

func sampleAlarmResult() Result {
	r := sampleResult()
	r.Baseline = nil
	r.Devices = 10000
	r.Alarm = &AlarmResult{Patients: 10000, Probes: 20, Stream: StreamAll,
		RaisesSent: 600, RaisesSeen: 600, AlarmP50: 7 * time.Millisecond, AlarmP99: 31200 * time.Microsecond,
		SSEP50: 9400 * time.Microsecond, SSEP99: 48 * time.Millisecond, SSEMax: 90 * time.Millisecond}
	return r
}

// TestAlarmMarkdownGolden: an alarm row after a load row starts the alarm
// table, and a second alarm row joins it.
func TestAlarmMarkdownGolden(t *testing.T) {
	missing := sampleAlarmResult()
	missing.Alarm.AlarmP50, missing.Alarm.AlarmP99 = 0, 0 // server without the histogram
	missing.Alarm.Missed, missing.Alarm.RaisesSeen, missing.Alarm.StreamDrops, missing.Alarm.Stream = 3, 597, 1, StreamProbes
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := AppendToFile(path, sampleResult().Markdown("2026-11-23", "abc1234", "2 cores", "tend bench")); err != nil {
		t.Fatal(err)
	}
	rows := []string{
		sampleAlarmResult().AlarmMarkdown("2026-11-23", "abc1234", "2 cores", "tend bench --alarms --patients 10000 --rate 50000"),
		missing.AlarmMarkdown("2026-11-23", "abc1234", "2 cores", "tend bench --alarms --alarm-stream probes"),
	}
	for _, r := range rows {
		if err := AppendAlarmToFile(path, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "alarms.golden.md")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("BENCHMARKS.md differs from %s (run with -update after checking):\n%s", golden, got)
	}
	nCols := strings.Count(strings.SplitN(AlarmMarkdownHeader(), "\n", 2)[0], " | ") + 1
	for _, r := range rows {
		if n := strings.Count(r, " | ") + 1; n != nCols {
			t.Errorf("row has %d cells, header %d: %s", n, nCols, r)
		}
	}
}
