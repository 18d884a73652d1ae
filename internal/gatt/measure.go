package gatt

import (
	"fmt"
	"math"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/senml"
)

// conv maps one decoded characteristic to measurements.
type conv struct {
	now   time.Time
	lim   senml.Limits
	at    time.Time // gateway receive time, zero if not sent
	loc   *time.Location
	seqAt map[uint16]time.Time

	out    []senml.Measurement
	absent []string
}

func (c *conv) characteristic(it *parsed) error {
	switch it.uuid {
	case UUIDHeartRate:
		m, err := DecodeHeartRate(it.value)
		if err != nil {
			return err
		}
		return c.heartRate(m)
	case UUIDBloodPressure:
		m, err := DecodeBloodPressure(it.value)
		if err != nil {
			return err
		}
		return c.bloodPressure(m)
	case UUIDCuffPressure:
		// The pressure while the cuff inflates is progress, not a
		// measurement of the patient: it is checked but not stored.
		_, err := DecodeBloodPressure(it.value)
		return err
	case UUIDTemperature:
		m, err := DecodeTemperature(it.value)
		if err != nil {
			return err
		}
		return c.temperature(m)
	case UUIDGlucose:
		m, err := DecodeGlucose(it.value)
		if err != nil {
			return err
		}
		return c.glucose(m)
	case UUIDGlucoseContext:
		m, err := DecodeGlucoseContext(it.value)
		if err != nil {
			return err
		}
		return c.glucoseContext(m)
	case UUIDPLXSpotCheck:
		m, err := DecodePLXSpotCheck(it.value)
		if err != nil {
			return err
		}
		return c.plxSpotCheck(m)
	case UUIDPLXContinuous:
		m, err := DecodePLXContinuous(it.value)
		if err != nil {
			return err
		}
		return c.plx(m.Normal, m.Status, m.DeviceStatus, c.received())
	case UUIDWeight:
		m, err := DecodeWeight(it.value)
		if err != nil {
			return err
		}
		return c.weight(m)
	case UUIDBodyComposition:
		m, err := DecodeBodyComposition(it.value)
		if err != nil {
			return err
		}
		return c.bodyComposition(m)
	case UUIDCGM:
		rs, err := DecodeCGM(it.value)
		if err != nil {
			return err
		}
		return c.cgm(rs, it.start)
	}
	return fmt.Errorf("no decoder")
}

// received is when the gateway got the value, or Tend's receive time.
func (c *conv) received() time.Time {
	if c.at.IsZero() {
		return c.now
	}
	return c.at
}

// when places a reading at the device's time stamp when it sent a complete
// one, else at the receive time.
func (c *conv) when(d *DateTime) (time.Time, error) {
	if d == nil || !d.Known() {
		return c.received(), nil
	}
	return d.In(c.loc)
}

// add converts v from unit to code's canonical unit, range-checks it and
// appends the measurement. A special value is recorded as absent instead.
func (c *conv) add(code string, field string, v Number, unit string, at time.Time) error {
	cd, ok := codes.ByLOINC(code)
	if !ok {
		return fmt.Errorf("code %s is not in the code table", code)
	}
	if !v.OK() {
		c.absent = append(c.absent, fmt.Sprintf("%s: %s", field, v.Special.Reason()))
		return nil
	}
	val, err := c.value(cd, field, v.Value, unit)
	if err != nil {
		return err
	}
	t, err := c.checkTime(at)
	if err != nil {
		return err
	}
	c.out = append(c.out, senml.Measurement{Code: cd.LOINC, MDC: cd.MDC, Value: val, HasValue: true, Unit: cd.Unit, Time: t})
	return nil
}

func (c *conv) value(cd codes.Code, field string, v float64, unit string) (float64, error) {
	val, err := codes.Convert(v, unit, cd)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	if val < cd.Min || val > cd.Max {
		return 0, fmt.Errorf("%s %s %s is outside the possible range %s–%s %s for %s (%s)",
			field, fmtNum(val), cd.Unit, fmtNum(cd.Min), fmtNum(cd.Max), cd.Unit, cd.LOINC, cd.Display)
	}
	return val, nil
}

// flag appends a urn:tend:code flag reading.
func (c *conv) flag(code string, set bool, at time.Time) error {
	v := 0.0
	if set {
		v = 1
	}
	return c.add(code, code, finite(v), "", at)
}

// skip records that a characteristic's values were not taken and why.
func (c *conv) skip(format string, args ...any) {
	c.absent = append(c.absent, fmt.Sprintf(format, args...))
}

// checkTime applies the same window as SenML: a device clock far ahead or
// far behind is a wrong clock, not a reading to file at that time.
func (c *conv) checkTime(t time.Time) (time.Time, error) {
	t = t.UTC().Round(time.Microsecond)
	switch {
	case t.Sub(c.now) > c.lim.MaxFuture:
		return t, fmt.Errorf("time %s is more than %s in the future (check the device clock and tz)", t.Format(time.RFC3339), fmtDuration(c.lim.MaxFuture))
	case c.now.Sub(t) > c.lim.MaxPast:
		return t, fmt.Errorf("time %s is more than %s in the past (check the device clock)", t.Format(time.RFC3339), fmtDuration(c.lim.MaxPast))
	}
	return t, nil
}

func (c *conv) heartRate(m HeartRate) error {
	at := c.received()
	if m.ContactSupported {
		if err := c.flag(codes.SensorOff, !m.ContactDetected, at); err != nil {
			return err
		}
		if !m.ContactDetected {
			// Without skin contact the number is not the patient's heart rate.
			c.skip("heart rate: sensor has no skin contact")
			return nil
		}
	}
	return c.add(codes.HeartRate, "heart rate", finite(float64(m.BPM)), "/min", at)
}

func (c *conv) bloodPressure(m BloodPressure) error {
	at, err := c.when(m.Time)
	if err != nil {
		return err
	}
	unit := "mm[Hg]"
	if m.KPa {
		unit = "kPa"
	}
	switch {
	case !m.Systolic.OK():
		c.skip("blood pressure: systolic is %s", m.Systolic.Special.Reason())
	case !m.Diastolic.OK():
		c.skip("blood pressure: diastolic is %s", m.Diastolic.Special.Reason())
	default:
		panel, _ := codes.ByLOINC(codes.BloodPressurePanel)
		p := senml.Measurement{Code: panel.LOINC, MDC: panel.MDC, Unit: panel.Unit}
		parts := []struct {
			code, field string
			v           Number
		}{{codes.SystolicBP, "systolic", m.Systolic}, {codes.DiastolicBP, "diastolic", m.Diastolic}, {codes.MeanBP, "mean arterial pressure", m.Mean}}
		for _, part := range parts {
			if !part.v.OK() { // only the mean may be missing
				c.skip("blood pressure: %s is %s", part.field, part.v.Special.Reason())
				continue
			}
			cd, _ := codes.ByLOINC(part.code)
			v, err := c.value(cd, part.field, part.v.Value, unit)
			if err != nil {
				return err
			}
			p.Components = append(p.Components, reading.Component{Code: cd.LOINC, MDC: cd.MDC, Value: v, Unit: cd.Unit})
		}
		if p.Time, err = c.checkTime(at); err != nil {
			return err
		}
		c.out = append(c.out, p)
	}
	if m.Pulse != nil {
		if err := c.add(codes.HeartRate, "pulse rate", *m.Pulse, "/min", at); err != nil {
			return err
		}
	}
	if m.Status != nil {
		s := *m.Status
		for _, f := range []struct {
			bit  uint16
			code string
		}{{BPBodyMovement, codes.BodyMovement}, {BPCuffLoose, codes.CuffLoose}, {BPIrregularPulse, codes.IrregularPulse}, {BPImproperPosition, codes.ImproperPosition}} {
			if s&f.bit != 0 {
				if err := c.flag(f.code, true, at); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (c *conv) temperature(m Temperature) error {
	at, err := c.when(m.Time)
	if err != nil {
		return err
	}
	unit := "Cel"
	if m.Fahrenheit {
		unit = "[degF]"
	}
	return c.add(codes.BodyTemperature, "temperature", m.Value, unit, at)
}

func (c *conv) glucose(m Glucose) error {
	at := c.received()
	if m.BaseTime.Known() {
		t, err := m.BaseTime.In(c.loc)
		if err != nil {
			return err
		}
		if m.TimeOffset != nil {
			t = t.Add(time.Duration(*m.TimeOffset) * time.Minute)
		}
		at = t
	}
	if m.Status != nil && *m.Status&GlucoseTimeFault != 0 {
		at = c.received() // the meter says its own time may be wrong
	}
	c.seqAt[m.Sequence] = at
	if m.Status != nil && *m.Status&glucoseInvalid != 0 {
		c.skip("glucose (sequence %d): the meter reports a sensor, strip or device fault (status 0x%04x)", m.Sequence, *m.Status)
		return c.flag(codes.DeviceFault, true, at)
	}
	if m.Concentration == nil {
		return nil // a record of status or context only
	}
	if m.Type == GlucoseControlSolution || m.Location == 4 {
		c.skip("glucose (sequence %d): control solution test, not a patient sample", m.Sequence)
		return nil
	}
	code := codes.CapillaryGlucose
	if m.Type == GlucoseISF {
		code = codes.InterstitialGlucose
	}
	v := *m.Concentration
	unit := "mg/dL"
	if v.OK() {
		if m.MolPerL {
			v.Value, unit = v.Value*1000, "mmol/L" // mol/L → mmol/L, then by molar mass
		} else {
			v.Value *= 1e5 // kg/L → mg/dL
		}
	}
	return c.add(code, fmt.Sprintf("glucose (sequence %d)", m.Sequence), v, unit, at)
}

func (c *conv) glucoseContext(m GlucoseContext) error {
	if m.HbA1c == nil {
		return nil // meal, carbohydrate, exercise and medication are not stored
	}
	at, ok := c.seqAt[m.Sequence]
	if !ok {
		at = c.received()
	}
	return c.add(codes.HbA1c, "HbA1c", *m.HbA1c, "%", at)
}

func (c *conv) plxSpotCheck(m PLXSpotCheck) error {
	at := c.received()
	if !m.ClockNotSet {
		var err error
		if at, err = c.when(m.Time); err != nil {
			return err
		}
	}
	return c.plx(m.SpO2PR, m.Status, m.DeviceStatus, at)
}

func (c *conv) plx(v SpO2PR, status *uint16, dev *uint32, at time.Time) error {
	if status != nil {
		switch s := *status; {
		case s&(PLXDemonstration|PLXTesting) != 0:
			c.skip("SpO2 and pulse rate: data for demonstration or testing, not of a patient")
			return nil
		case s&(PLXUnavailable|PLXInvalid) != 0:
			c.skip("SpO2 and pulse rate: the oximeter marks the measurement invalid or unavailable")
			return nil
		}
	}
	if dev != nil {
		d := *dev
		off := d&(PLXSensorUnconnected|PLXSensorDisconnected|PLXSensorDisplaced) != 0
		if err := c.flag(codes.SensorOff, off, at); err != nil {
			return err
		}
		if off {
			c.skip("SpO2 and pulse rate: sensor unconnected, disconnected or displaced")
			return nil
		}
		if d&(PLXEquipmentMalfunction|PLXSensorMalfunction|PLXUnknownSensor) != 0 {
			c.skip("SpO2 and pulse rate: the oximeter reports an equipment or sensor fault")
			return c.flag(codes.DeviceFault, true, at)
		}
	}
	if err := c.add(codes.OxygenSaturation, "SpO2", v.SpO2, "%", at); err != nil {
		return err
	}
	return c.add(codes.PulseRate, "pulse rate", v.PR, "/min", at)
}

// Mass and length resolutions of WSS and BCS, as exact divisions.
func mass(raw uint16, imperial bool) (Number, string) {
	if imperial {
		return finite(float64(raw) / 100), "[lb_av]" // 0.01 lb
	}
	return finite(float64(raw) * 5 / 1000), "kg" // 0.005 kg
}

func length(raw uint16, imperial bool) (Number, string) {
	if imperial {
		return finite(float64(raw) / 10), "[in_i]" // 0.1 in
	}
	return finite(float64(raw) / 1000), "m" // 0.001 m
}

func (c *conv) weight(m Weight) error {
	at, err := c.when(m.Time)
	if err != nil {
		return err
	}
	if m.Raw == unsuccessful {
		c.skip("weight: measurement unsuccessful")
		return nil
	}
	w, unit := mass(m.Raw, m.Imperial)
	if err := c.add(codes.BodyWeight, "weight", w, unit, at); err != nil {
		return err
	}
	if m.BMI != nil {
		if err := c.add(codes.BMI, "BMI", finite(float64(*m.BMI)/10), "kg/m2", at); err != nil {
			return err
		}
		h, unit := length(*m.Height, m.Imperial)
		if err := c.add(codes.BodyHeight, "height", h, unit, at); err != nil {
			return err
		}
	}
	return nil
}

func (c *conv) bodyComposition(m BodyComposition) error {
	at, err := c.when(m.Time)
	if err != nil {
		return err
	}
	if m.BodyFat == unsuccessful {
		// BCS: the other fields of an unsuccessful measurement carry no data.
		c.skip("body composition: measurement unsuccessful")
		return nil
	}
	if err := c.add(codes.BodyFat, "body fat", finite(float64(m.BodyFat)/10), "%", at); err != nil {
		return err
	}
	if m.Weight != nil {
		w, unit := mass(*m.Weight, m.Imperial)
		if err := c.add(codes.BodyWeight, "weight", w, unit, at); err != nil {
			return err
		}
	}
	if m.Height != nil {
		h, unit := length(*m.Height, m.Imperial)
		if err := c.add(codes.BodyHeight, "height", h, unit, at); err != nil {
			return err
		}
	}
	return nil
}

func (c *conv) cgm(rs []CGM, start time.Time) error {
	last := rs[len(rs)-1].TimeOffset
	for i, r := range rs {
		var at time.Time
		if !start.IsZero() {
			at = start.Add(time.Duration(r.TimeOffset) * time.Minute)
		} else {
			at = c.received().Add(time.Duration(int(r.TimeOffset)-int(last)) * time.Minute)
		}
		field := fmt.Sprintf("CGM record %d (offset %d min)", i, r.TimeOffset)
		if r.Status&cgmInvalid != 0 {
			c.skip("%s: session stopped or sensor/device fault (status 0x%06x)", field, r.Status)
			if err := c.flag(codes.DeviceFault, true, at); err != nil {
				return err
			}
			continue
		}
		if err := c.add(codes.InterstitialGlucose, field, r.Glucose, "mg/dL", at); err != nil {
			return err
		}
	}
	return nil
}

func fmtNum(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%g", f)
}

// fmtDuration writes whole days as days ("366 days"), as SenML errors do.
func fmtDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}
