package ingest

import (
	"net/http"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/gatt"
	"github.com/tendhealth/tend/internal/senml"
)

// maxAbsentInReason bounds how many left-out values a rejection lists.
const maxAbsentInReason = 8

// decode turns a payload of a canonical content type into measurements:
// SenML JSON or CBOR, or a Bluetooth GATT gateway envelope.
func (p *Pipeline) decode(ct string, req Request, now time.Time) ([]senml.Measurement, *Rejection) {
	if ct != gatt.ContentType {
		ms, err := senml.Decode(ct, req.Payload, now, p.Limits)
		if err != nil {
			return nil, &Rejection{Status: http.StatusBadRequest, Reason: err.Error()}
		}
		return ms, nil
	}
	res, err := gatt.Decode(req.Payload, now, p.Limits)
	if err != nil {
		return nil, &Rejection{Status: http.StatusBadRequest, Reason: err.Error()}
	}
	if len(res.Absent) == 0 {
		return res.Measurements, nil
	}
	absent := res.Absent
	more := ""
	if len(absent) > maxAbsentInReason {
		more = "; …"
		absent = absent[:maxAbsentInReason]
	}
	// A device that sent only values without a number (NaN, a fault, no
	// skin contact) has told Tend nothing storable: the sender hears why and
	// the payload is kept. With other readings beside them the readings are
	// taken and the gaps logged, as the device meant them to be.
	if len(res.Measurements) == 0 {
		return nil, &Rejection{Status: http.StatusUnprocessableEntity,
			Reason: "no reading has a value: " + strings.Join(absent, "; ") + more}
	}
	p.Logger.Info("gatt values without a number left out", "source", req.Source, "device", req.Device,
		"readings", len(res.Measurements), "absent", strings.Join(absent, "; ")+more)
	return res.Measurements, nil
}
