package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// bucket is one cumulative histogram bucket: count observations <= le.
type bucket struct {
	le    float64
	count float64
}

// parseHistogram reads the buckets of histogram name from a Prometheus text
// exposition, summing series that differ only in other labels (for example
// one per ingest source). It returns nil, nil when the histogram is absent.
// It is a small parser of the lines it needs, not a full text-format parser.
func parseHistogram(text []byte, name string) ([]bucket, error) {
	byLE := map[float64]float64{}
	prefix := name + "_bucket"
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(l, prefix)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ' && rest[0] != '\t') {
			continue // comments, other metrics, or a longer name sharing the prefix
		}
		le, value, err := parseBucketLine(rest)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %s: %w", line, prefix, err)
		}
		byLE[le] += value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	if len(byLE) == 0 {
		return nil, nil
	}
	bs := make([]bucket, 0, len(byLE))
	for le, c := range byLE {
		bs = append(bs, bucket{le: le, count: c})
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	return bs, nil
}

// parseBucketLine parses `{labels} value [timestamp]` and returns the le
// label and the value.
func parseBucketLine(s string) (le, value float64, err error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") {
		return 0, 0, errors.New("bucket without labels")
	}
	labels, rest, err := splitLabels(s[1:])
	if err != nil {
		return 0, 0, err
	}
	leText, ok := labels["le"]
	if !ok {
		return 0, 0, errors.New("bucket without le label")
	}
	le, err = parsePromFloat(leText)
	if err != nil || math.IsNaN(le) {
		return 0, 0, fmt.Errorf("bad le %q", leText)
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return 0, 0, errors.New("bucket without value")
	}
	value, err = parsePromFloat(fields[0])
	if err != nil || math.IsNaN(value) || math.IsInf(value, 0) || value < 0 {
		return 0, 0, fmt.Errorf("bad bucket count %q", fields[0])
	}
	return le, value, nil
}

// splitLabels parses `name="value",...}` (after the opening brace) and
// returns the labels and the text after the closing brace.
func splitLabels(s string) (map[string]string, string, error) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return nil, "", errors.New("unterminated labels")
		}
		if s[0] == '}' {
			return labels, s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, "", errors.New("bad label")
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t")
		if s == "" || s[0] != '"' {
			return nil, "", errors.New("label value not quoted")
		}
		var val strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, "", errors.New("unterminated label value")
		}
		labels[key] = val.String()
		s = s[i+1:]
	}
}

func parsePromFloat(s string) (float64, error) {
	switch s {
	case "+Inf", "Inf", "inf", "+inf":
		return math.Inf(1), nil
	case "-Inf", "-inf":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(s, 64)
}

// subtractBuckets returns after-before per bucket, the observations made
// between two scrapes. A bucket that went down means the server restarted in
// between; then after alone is the best estimate.
func subtractBuckets(after, before []bucket) []bucket {
	prev := map[float64]float64{}
	for _, b := range before {
		prev[b.le] = b.count
	}
	out := make([]bucket, len(after))
	for i, b := range after {
		if p := prev[b.le]; p <= b.count {
			b.count -= p
		} else {
			return slices.Clone(after)
		}
		out[i] = b
	}
	return out
}

// histogramQuantile estimates the q-quantile from cumulative buckets sorted
// by le the way Prometheus' histogram_quantile does: find the bucket holding
// the rank and interpolate linearly inside it; a rank in the +Inf bucket
// yields the largest finite bound. NaN when there is nothing to estimate.
func histogramQuantile(q float64, bs []bucket) float64 {
	if math.IsNaN(q) || q < 0 || q > 1 || len(bs) < 2 || !math.IsInf(bs[len(bs)-1].le, 1) {
		return math.NaN()
	}
	// Force monotonic counts, as Prometheus does, in case scrapes raced.
	cum := make([]bucket, len(bs))
	copy(cum, bs)
	for i := 1; i < len(cum); i++ {
		cum[i].count = max(cum[i].count, cum[i-1].count)
	}
	total := cum[len(cum)-1].count
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	b := 0
	for b < len(cum)-1 && cum[b].count < rank {
		b++
	}
	if b == len(cum)-1 {
		return cum[len(cum)-2].le
	}
	if b == 0 && cum[0].le <= 0 {
		return cum[0].le
	}
	start, count := 0.0, cum[b].count
	if b > 0 {
		start = cum[b-1].le
		count -= cum[b-1].count
		rank -= cum[b-1].count
	}
	if count == 0 {
		return cum[b].le
	}
	// Clamp: with extreme bounds float rounding could step past the bucket.
	return min(start+(cum[b].le-start)*(rank/count), cum[b].le)
}
