package sqlite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/tendhealth/tend/internal/reading"
)

// Components are stored in a small binary form (about a third of JSON):
//
//	version(1) count(uvarint) { code(str) mdc(str) unit(str) value(float64 BE) }*
//
// where str is uvarint length + bytes.
const componentsVersion = 1

func encodeComponents(cs []reading.Component) []byte {
	if len(cs) == 0 {
		return nil
	}
	n := 1 + binary.MaxVarintLen64
	for _, c := range cs {
		n += 3*binary.MaxVarintLen64 + len(c.Code) + len(c.MDC) + len(c.Unit) + 8
	}
	b := make([]byte, 0, n)
	b = append(b, componentsVersion)
	b = binary.AppendUvarint(b, uint64(len(cs)))
	for _, c := range cs {
		for _, s := range []string{c.Code, c.MDC, c.Unit} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(c.Value))
	}
	return b
}

func decodeComponents(b []byte) ([]reading.Component, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != componentsVersion {
		return nil, fmt.Errorf("components: unknown encoding version %d", b[0])
	}
	b = b[1:]
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, errors.New("components: bad count")
	}
	b = b[n:]
	// Each component takes at least 3 length bytes and 8 value bytes; this
	// bounds the allocation by the input size.
	if count > uint64(len(b)/11) {
		return nil, errors.New("components: count exceeds data")
	}
	out := make([]reading.Component, 0, count)
	for i := uint64(0); i < count; i++ {
		var fields [3]string
		for f := range fields {
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return nil, fmt.Errorf("components: component %d: bad string", i)
			}
			fields[f] = string(b[n : n+int(l)])
			b = b[n+int(l):]
		}
		if len(b) < 8 {
			return nil, fmt.Errorf("components: component %d: truncated value", i)
		}
		v := math.Float64frombits(binary.BigEndian.Uint64(b))
		b = b[8:]
		out = append(out, reading.Component{Code: fields[0], MDC: fields[1], Unit: fields[2], Value: v})
	}
	if len(b) != 0 {
		return nil, errors.New("components: trailing bytes")
	}
	return out, nil
}
