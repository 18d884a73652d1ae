package postgres

import (
	"encoding/json"
	"fmt"

	"github.com/tendhealth/tend/internal/reading"
)

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
