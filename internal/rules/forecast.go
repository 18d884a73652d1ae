package rules

import (
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/glucose"
)

// forecast raises "urgent low soon" when the AR2 forecast from the latest
// reading and the one about 5 minutes before it falls below Value within
// Window. Without a usable earlier reading the state is left as it is.
func (e *Engine) forecast(p *patientState, rule Rule, sig *signal, ev Event, out *Output) {
	prev, ok := nearest(sig.History[:len(sig.History)-1], ev.Time.Add(-5*time.Minute), time.Minute)
	if !ok {
		return
	}
	horizon := rule.window(20 * time.Minute)
	f, err := glucose.AR2(glucose.Point{At: prev.T, MgDL: prev.V}, glucose.Point{At: ev.Time, MgDL: ev.Value}, int((horizon+5*time.Minute-1)/(5*time.Minute)))
	if err != nil {
		return
	}
	at, below := glucose.WillBeBelow(f, rule.Value, horizon)
	if below {
		ev.Message = fmt.Sprintf("%s: %s mg/dL now, forecast below %s mg/dL in %s", rule.label(), fmtValue(ev.Value), fmtValue(rule.Value), at.Sub(ev.Time).Round(time.Minute))
	} else {
		ev.Message = fmt.Sprintf("%s: forecast no longer below %s mg/dL", rule.label(), fmtValue(rule.Value))
	}
	e.transition(p, rule, "", below, ev, out)
}
