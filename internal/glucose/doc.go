// Package glucose forecasts continuous glucose monitor (CGM) readings with
// Nightscout's AR2 model and computes glucose rate of change.
//
// Source: Nightscout cgm-remote-monitor, lib/plugins/ar2.js (the forecast
// and its "avgLoss" alarm measure) and lib/plugins/delta.js (how the
// reading five minutes ago is chosen). This package is an independent Go
// implementation of the same algorithm, not a translation of that code.
//
// The model. Readings are taken in log space relative to a central tendency
// of 140 mg/dL, x = ln(BG/140), and each 5-minute step is predicted as
//
//	x[n+1] = -0.723*x[n-1] + 1.716*x[n]
//
// from the current reading and the one 5 minutes before it. Each predicted
// value is 140*exp(x), rounded to a whole mg/dL (halves up) and clamped to
// [36, 400]. Because the two coefficients sum to 0.993, the model drifts
// slowly back towards 140: a flat 100 mg/dL is forecast as 100, 101, 101,
// 102, ... and only a flat 140 stays put.
//
// Alarm measure. AvgLoss is Nightscout's mean squared log10 distance of the
// first six predicted values from 120 mg/dL. Nightscout sums six terms but
// divides by five; that quirk is kept so that thresholds tuned on Nightscout
// (warn above 0.05, urgent above 0.10) mean the same here. AvgLoss grows
// with distance from 120 in either direction, so use the forecast values
// (WillBeBelow) to tell a predicted low from a predicted high.
//
// Differences from Nightscout, on purpose:
//   - Nightscout uses the previous entry as "5 minutes ago" whenever it is
//     at most 9 minutes old (even if it is 1 minute old) and extrapolates a
//     straight line when it is older. AR2 here requires the previous reading
//     to be 5 minutes +/- StepTolerance (1 minute) before the current one and
//     returns an error otherwise; History picks such a reading from a series
//     with gaps or 1-minute sampling.
//   - Input readings must be within [36, 400] mg/dL, the range a CGM
//     reports; Nightscout only checks the lower limit.
//   - Predicted points are exactly 5, 10, ... minutes after the current
//     reading; Nightscout shifts them by 2 s for its chart.
//
// Everything here is pure computation; the only allocation is the slice of
// predicted points.
package glucose
