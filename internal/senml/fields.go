package senml

import "strings"

// The field accessors map a SenML label to the rawRecord field that holds
// it, by value type. Both wire formats use them, so JSON and CBOR accept
// exactly the same fields.

func (r *rawRecord) stringField(label string) **string {
	switch label {
	case "bn":
		return &r.BaseName
	case "bu":
		return &r.BaseUnit
	case "n":
		return &r.Name
	case "u":
		return &r.Unit
	case "vs":
		return &r.StringValue
	case "vd":
		return &r.DataValue
	}
	return nil
}

func (r *rawRecord) numberField(label string) **float64 {
	switch label {
	case "bt":
		return &r.BaseTime
	case "bv":
		return &r.BaseValue
	case "bs":
		return &r.BaseSum
	case "bver":
		return &r.BaseVersion
	case "v":
		return &r.Value
	case "s":
		return &r.Sum
	case "t":
		return &r.Time
	case "ut":
		return &r.UpdateTime
	}
	return nil
}

func (r *rawRecord) boolField(label string) **bool {
	if label == "vb" {
		return &r.BoolValue
	}
	return nil
}

// mustUnderstand reports whether an unknown label may not be ignored:
// RFC 8428 §4.4 reserves labels ending in "_" for extensions a receiver
// must reject when it does not implement them.
func mustUnderstand(label string) bool { return strings.HasSuffix(label, "_") }

func duplicateErr(i int, label string) *Error {
	return recordErr(i, label, "field %q appears twice", label)
}

func typeErr(i int, label, want string) *Error {
	return recordErr(i, label, "field %q must be %s", label, want)
}

func unknownMustUnderstand(i int, label string) *Error {
	return recordErr(i, clip(label), "field %q is not supported (labels ending in _ must be understood)", clip(label))
}
