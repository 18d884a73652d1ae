package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tendhealth/tend/internal/reading"
)

// Observation ids are "{series}-{t}" with both parts in base 36, the same
// scheme as the embedded store: stable, short, valid FHIR ids
// ([A-Za-z0-9\-\.]{1,64}), and decodable back to the samples key. Carrying
// t lets a lookup by id prune to the one partition holding the sample. A
// negative t (before 1970) keeps its sign: "{series}--{|t|}".
func observationID(series, t int64) string {
	return strconv.FormatInt(series, 36) + "-" + strconv.FormatInt(t, 36)
}

// parseObservationID is the inverse of observationID. Only the canonical
// spelling is accepted so that one sample has exactly one id.
func parseObservationID(id string) (series, t int64, err error) {
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
	if observationID(series, t) != id {
		return 0, 0, errors.New("observation id: not canonical")
	}
	return series, t, nil
}

// Components are stored as a jsonb array so SQL can reach into panels
// (Downsample summarises a panel by components->0->>'value'):
//
//	[{"code":"8480-6","mdc":"MDC_PRESS_BLD_NONINV_SYS","unit":"mm[Hg]","value":120.5}, ...]
//
// Go writes the shortest decimal that parses back to the same float64 and
// jsonb keeps numbers as exact decimals, so values round-trip bit for bit
// (except -0, which jsonb, like numeric, has no way to spell).
type storedComponent struct {
	Code  string  `json:"code"`
	MDC   string  `json:"mdc,omitempty"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
}

func encodeComponents(cs []reading.Component) ([]byte, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	out := make([]storedComponent, len(cs))
	for i, c := range cs {
		out[i] = storedComponent{Code: c.Code, MDC: c.MDC, Unit: c.Unit, Value: c.Value}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("components: %w", err)
	}
	return b, nil
}

func decodeComponents(b []byte) ([]reading.Component, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var in []storedComponent
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("components: %w", err)
	}
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]reading.Component, len(in))
	for i, c := range in {
		out[i] = reading.Component{Code: c.Code, MDC: c.MDC, Unit: c.Unit, Value: c.Value}
	}
	return out, nil
}
