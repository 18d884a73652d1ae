package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

var columns = []string{
	"date", "commit", "machine", "command", "proto", "devices", "readings/msg", "window",
	"acked readings/s", "ack p50", "ack p99", "ack max", "stored p50", "stored p99",
	"lost", "errors", "baseline readings/s", "ratio",
}

var alarmColumns = []string{
	"date", "commit", "machine", "command", "proto", "patients", "probes", "stream", "window",
	"acked readings/s", "ack p99", "reading→alarm p50", "reading→alarm p99",
	"reading→SSE p50", "reading→SSE p99", "raises seen", "missed", "stream drops", "lost", "errors",
}

// MarkdownHeader returns the header and separator lines of the
// BENCHMARKS.md load table, each ending in a newline.
func MarkdownHeader() string { return tableHeader(columns) }

// AlarmMarkdownHeader is MarkdownHeader for the alarm latency table.
func AlarmMarkdownHeader() string { return tableHeader(alarmColumns) }

func tableHeader(cols []string) string {
	seps := make([]string, len(cols))
	for i := range seps {
		seps[i] = "---"
	}
	return "| " + strings.Join(cols, " | ") + " |\n|" + strings.Join(seps, "|") + "|\n"
}

// AlarmMarkdown returns r as one row of the alarm latency table (no
// trailing newline); r must come from an alarm run (r.Alarm set).
func (r Result) AlarmMarkdown(date, commit, machine, command string) string {
	a := r.Alarm
	if a == nil {
		a = &AlarmResult{}
	}
	alarmP50, alarmP99 := "n/a", "n/a"
	if a.AlarmP50 > 0 || a.AlarmP99 > 0 {
		alarmP50, alarmP99 = fmtDur(a.AlarmP50), fmtDur(a.AlarmP99)
	}
	cells := []string{
		date, commit, machine, "`" + strings.ReplaceAll(command, "`", "'") + "`",
		r.Proto, strconv.Itoa(a.Patients), strconv.Itoa(a.Probes), a.Stream, r.Duration.String(),
		fmt.Sprintf("%.0f", r.Rate), fmtDur(r.AckP99), alarmP50, alarmP99,
		fmtDur(a.SSEP50), fmtDur(a.SSEP99), fmt.Sprintf("%d/%d", a.RaisesSeen, a.RaisesSent),
		strconv.FormatInt(a.Missed, 10), strconv.FormatInt(a.StreamDrops, 10),
		strconv.FormatInt(r.Lost, 10), strconv.FormatInt(r.Errors, 10),
	}
	return joinCells(cells)
}

func joinCells(cells []string) string {
	for i, c := range cells {
		c = strings.NewReplacer("\r", " ", "\n", " ", "|", `\|`).Replace(c)
		if strings.TrimSpace(c) == "" {
			c = "-"
		}
		cells[i] = c
	}
	return "| " + strings.Join(cells, " | ") + " |"
}

// Markdown returns r as one table row (no trailing newline) matching
// MarkdownHeader.
func (r Result) Markdown(date, commit, machine, command string) string {
	na := "n/a"
	storedP50, storedP99, lost := na, na, na
	if r.Proto != "baseline" {
		lost = strconv.FormatInt(r.Lost, 10)
		if r.StoredP50 > 0 || r.StoredP99 > 0 {
			storedP50, storedP99 = fmtDur(r.StoredP50), fmtDur(r.StoredP99)
		}
	}
	baseRate, ratio := na, na
	if r.Baseline != nil {
		baseRate = fmt.Sprintf("%.0f", r.Baseline.Rate)
		if r.Baseline.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", r.Baseline.Ratio)
		}
	}
	cells := []string{
		date, commit, machine, "`" + strings.ReplaceAll(command, "`", "'") + "`",
		r.Proto, strconv.Itoa(r.Devices), strconv.Itoa(r.PerMessage), r.Duration.String(),
		fmt.Sprintf("%.0f", r.Rate), fmtDur(r.AckP50), fmtDur(r.AckP99), fmtDur(r.AckMax),
		storedP50, storedP99, lost, strconv.FormatInt(r.Errors, 10), baseRate, ratio,
	}
	return joinCells(cells)
}

// fmtDur prints a latency with precision that suits its size.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Millisecond).String()
}

// AppendToFile appends row to the load table in the Markdown file at path.
// It creates the file with a heading and table when missing, and starts a
// new table when the file does not end in one with the current header, so
// an edited file or a changed column set never yields a broken table. The
// file is replaced atomically.
func AppendToFile(path, row string) error {
	return appendRow(path, row, "## Device ingest load (`tend bench`)\n\n", MarkdownHeader(), false)
}

// AppendAlarmToFile is AppendToFile for the alarm latency table
// (AlarmMarkdownHeader). The first alarm table of a file gets a heading, so
// it is not mistaken for a continuation of the load table above it.
func AppendAlarmToFile(path, row string) error {
	return appendRow(path, row, "## Alarm latency (`tend bench --alarms`)\n\n", AlarmMarkdownHeader(), true)
}

// appendRow appends row to the table with header at the end of the file,
// starting the file with heading, or a new table, when needed; with
// headFirstTable a file that has no such table yet gets heading before it.
func appendRow(path, row, heading, header string, headFirstTable bool) error {
	row = strings.TrimRight(row, "\r\n")
	if !strings.HasPrefix(row, "|") || strings.ContainsAny(row, "\r\n") {
		return errors.New("bench: append benchmark row: not a single Markdown table row")
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bench: read %s: %w", filepath.Base(path), err)
	}
	text := string(old)
	var b strings.Builder
	b.WriteString(text)
	switch {
	case len(old) == 0:
		b.WriteString("# Benchmarks\n\n" + heading)
		b.WriteString(header)
	case !endsWithTable(text, header):
		if !strings.HasSuffix(text, "\n") {
			b.WriteString("\n")
		}
		b.WriteString("\n")
		if headFirstTable && !strings.Contains(text, header) {
			b.WriteString(heading)
		}
		b.WriteString(header)
	case !strings.HasSuffix(text, "\n"):
		b.WriteString("\n")
	}
	b.WriteString(row)
	b.WriteString("\n")
	return writeAtomic(path, []byte(b.String()))
}

// endsWithTable reports whether text ends in a table that starts with
// header and has nothing but table rows after it.
func endsWithTable(text, header string) bool {
	i := strings.LastIndex(text, header)
	if i < 0 || (i > 0 && text[i-1] != '\n') {
		return false
	}
	rest := text[i+len(header):]
	if strings.Contains(rest, "\n\n") {
		return false // a blank line ends a Markdown table
	}
	for _, l := range strings.Split(strings.TrimSuffix(rest, "\n"), "\n") {
		if l != "" && !strings.HasPrefix(l, "|") {
			return false
		}
	}
	return true
}

func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".bench-*.md")
	if err != nil {
		return fmt.Errorf("bench: write %s: %w", filepath.Base(path), err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bench: write %s: %w", filepath.Base(path), err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bench: write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bench: write %s: %w", filepath.Base(path), err)
	}
	return nil
}
