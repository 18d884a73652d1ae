package senml

import (
	"errors"
	"fmt"
	"sort"

	"github.com/fxamacker/cbor/v2"
)

// cborLabels are the integer labels of RFC 8428 §6, Table 6.
var cborLabels = map[int64]string{
	-1: "bver", -2: "bn", -3: "bt", -4: "bu", -5: "bv", -6: "bs",
	0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb", 5: "s", 6: "t", 7: "ut", 8: "vd",
}

// cborDec refuses what SenML never needs and an attacker would use: deep
// nesting, indefinite lengths, tags, duplicate keys and invalid UTF-8. Sizes
// are further bounded by Limits.MaxBytes before decoding starts.
var cborDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  4, // pack → record → value; the library minimum
		MaxArrayElements: 1 << 20,
		MaxMapPairs:      64, // a record has at most 15 defined labels
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		IntDec:           cbor.IntDecConvertSigned,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("senml: cbor options: %v", err))
	}
	return dm
}()

// parseCBOR reads a SenML CBOR pack: an array of maps with integer labels.
func parseCBOR(payload []byte, maxRecords int) ([]rawRecord, error) {
	n, err := cborArrayLen(payload)
	if err != nil {
		return nil, err
	}
	if n > uint64(maxRecords) {
		return nil, payloadErr("pack has %d records; the limit is %d", n, maxRecords)
	}
	var maps []map[any]cbor.RawMessage
	if err := cborDec.Unmarshal(payload, &maps); err != nil {
		return nil, &Error{Record: -1, Msg: cborMsg(err), err: err}
	}
	recs := make([]rawRecord, len(maps))
	for i, m := range maps {
		if err := fillCBORRecord(&recs[i], m, i); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// cborArrayLen reads the head of the top-level array so an oversized pack is
// refused before any of it is decoded.
func cborArrayLen(b []byte) (uint64, error) {
	notPack := payloadErr("payload is not a SenML pack: a CBOR array of records is expected")
	if len(b) == 0 || b[0]>>5 != 4 {
		return 0, notPack
	}
	info := b[0] & 0x1f
	switch {
	case info < 24:
		return uint64(info), nil
	case info == 31:
		return 0, payloadErr("payload uses an indefinite-length array; send a definite length")
	case info > 27:
		return 0, notPack
	}
	size := 1 << (info - 24) // 1, 2, 4 or 8 bytes follow
	if len(b) < 1+size {
		return 0, payloadErr("payload is not valid CBOR: it ends early")
	}
	var n uint64
	for _, c := range b[1 : 1+size] {
		n = n<<8 | uint64(c)
	}
	return n, nil
}

func fillCBORRecord(r *rawRecord, m map[any]cbor.RawMessage, i int) error {
	// Visit keys in a fixed order so that a record with several faults
	// always reports the same one.
	keys := make([]any, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool { return keyLess(keys[a], keys[b]) })
	for _, k := range keys {
		raw := m[k]
		var label string
		switch k := k.(type) {
		case int64:
			l, ok := cborLabels[k]
			if !ok {
				continue // a label registered after RFC 8428; safe to ignore
			}
			label = l
		case string:
			if _, known := cborLabelByName[k]; known {
				return recordErr(i, clip(k), "field %q must use its integer label %d in SenML CBOR", k, cborLabelByName[k])
			}
			if mustUnderstand(k) {
				return unknownMustUnderstand(i, k)
			}
			continue
		default:
			return recordErr(i, "", "has a map key that is neither an integer nor a text string")
		}
		if sp := r.stringField(label); sp != nil {
			var s string
			if label == "vd" { // data values are byte strings; refused later anyway
				var b []byte
				if err := cborDec.Unmarshal(raw, &b); err != nil {
					return typeErr(i, label, "a byte string")
				}
				s = string(b)
			} else if err := cborDec.Unmarshal(raw, &s); err != nil {
				return typeErr(i, label, "a string")
			}
			*sp = &s
			continue
		}
		if np := r.numberField(label); np != nil {
			var f float64
			if !isCBORNumber(raw) || cborDec.Unmarshal(raw, &f) != nil {
				return typeErr(i, label, "a number")
			}
			*np = &f
			continue
		}
		if bp := r.boolField(label); bp != nil {
			var b bool
			if err := cborDec.Unmarshal(raw, &b); err != nil {
				return typeErr(i, label, "true or false")
			}
			*bp = &b
		}
	}
	return nil
}

// isCBORNumber reports whether raw is an integer or a float: the decoder
// would otherwise turn null into 0 and accept a missing reading as a value.
func isCBORNumber(raw cbor.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	major, info := raw[0]>>5, raw[0]&0x1f
	switch major {
	case 0, 1:
		return true
	case 7:
		return info == 25 || info == 26 || info == 27 // half, single, double
	}
	return false
}

var cborLabelByName = func() map[string]int64 {
	m := make(map[string]int64, len(cborLabels))
	for k, v := range cborLabels {
		m[v] = k
	}
	return m
}()

// cborMsg explains a CBOR decoding failure without internal detail.
func cborMsg(err error) string {
	var (
		dup  *cbor.DupMapKeyError
		typ  *cbor.UnmarshalTypeError
		syn  *cbor.SyntaxError
		tag  *cbor.TagsMdError
		idef *cbor.IndefiniteLengthError
		nest *cbor.MaxNestedLevelError
		arr  *cbor.MaxArrayElementsError
		mp   *cbor.MaxMapPairsError
	)
	switch {
	case errors.As(err, &dup):
		return "payload is not valid SenML CBOR: a record repeats a label"
	case errors.As(err, &typ):
		return "payload is not a SenML pack: a CBOR array of maps is expected"
	case errors.As(err, &tag):
		return "payload is not valid SenML CBOR: CBOR tags are not accepted"
	case errors.As(err, &idef):
		return "payload is not valid SenML CBOR: indefinite lengths are not accepted"
	case errors.As(err, &nest), errors.As(err, &arr), errors.As(err, &mp):
		return "payload is not valid SenML CBOR: it nests too deeply or has too many fields"
	case errors.As(err, &syn):
		return "payload is not valid CBOR"
	}
	return "payload is not valid CBOR"
}

// keyLess orders integer labels before text labels, each ascending.
func keyLess(a, b any) bool {
	ai, aInt := a.(int64)
	bi, bInt := b.(int64)
	switch {
	case aInt && bInt:
		return ai < bi
	case aInt != bInt:
		return aInt
	}
	as, _ := a.(string)
	bs, _ := b.(string)
	return as < bs
}
