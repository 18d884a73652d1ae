package store

import (
	"errors"
	"strconv"
	"strings"
)

// Observation ids are "{series}-{t}" with both parts in base 36, where
// series is a store's positive series key and t the reading time in unix
// nanoseconds: stable, short, valid FHIR ids ([A-Za-z0-9\-\.]{1,64}), and
// decodable back to the samples key without a lookup table (carrying t
// lets a time-partitioned store go straight to one partition). A negative t
// (before 1970) keeps its sign: "{series}--{|t|}". Every implementation
// uses this one scheme, so ids survive moving data between stores.
func ObservationID(series, t int64) string {
	return strconv.FormatInt(series, 36) + "-" + strconv.FormatInt(t, 36)
}

// ParseObservationID is the inverse of ObservationID. Only the canonical
// spelling is accepted so that one sample has exactly one id.
func ParseObservationID(id string) (series, t int64, err error) {
	if len(id) == 0 || len(id) > 64 {
		return 0, 0, errors.New("observation id: bad length")
	}
	sp, tp, ok := strings.Cut(id, "-")
	if !ok {
		return 0, 0, errors.New("observation id: missing separator")
	}
	series, err = strconv.ParseInt(sp, 36, 64)
	if err != nil || series <= 0 {
		return 0, 0, errors.New("observation id: bad series")
	}
	t, err = strconv.ParseInt(tp, 36, 64)
	if err != nil {
		return 0, 0, errors.New("observation id: bad time")
	}
	if ObservationID(series, t) != id {
		return 0, 0, errors.New("observation id: not canonical")
	}
	return series, t, nil
}
