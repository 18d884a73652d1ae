// Package news2 computes the National Early Warning Score 2 (NEWS2) from a
// patient's latest vital signs.
//
// Source: Royal College of Physicians, "National Early Warning Score (NEWS) 2:
// Standardising the assessment of acute-illness severity in the NHS",
// updated report of a working party, London: RCP, December 2017; the NEWS2
// scoring chart (chart 1) and clinical response thresholds (chart 2).
//
// Seven parameters are scored: respiration rate, SpO2 (scale 1, or scale 2
// for patients with confirmed hypercapnic respiratory failure), air or
// supplemental oxygen, systolic blood pressure, pulse, level of consciousness
// (ACVPU) and temperature. The sum is mapped to the RCP clinical response
// band: none (0), low (1-4), low-medium (a score of 3 in any single
// parameter with an aggregate below 5), medium (5-6) and high (7 or more).
//
// Rounding. The chart bands whole numbers for respiration rate, SpO2,
// systolic BP and pulse, and one decimal place for temperature, so gaps such
// as "20 then 21" have no home for a measured 20.5. Every measured value is
// first rounded half away from zero to the chart's precision (whole numbers,
// or 0.1 degC for temperature) and then banded: RR 20.5 scores as 21,
// SpO2 93.6 as 94, temperature 35.05 as 35.1 and 35.04 as 35.0.
//
// Missing and stale values. Each parameter carries its own observation time.
// A parameter with no value, a non-finite value, an unknown ACVPU level, or
// an observation older than its freshness window (Config.Fresh, see
// DefaultFreshness) is not scored; the Result lists it in Missing or Stale
// and Complete is false. Because every parameter scores 0 or more, a partial
// score is a LOWER BOUND on the true NEWS2: a partial total of 2 may be a 9
// once the missing observations are taken. A missing or stale oxygen flag
// counts as missing, never as "air"; when it is unknown, SpO2 on scale 2 is
// scored as if on air, which keeps the SpO2 part a lower bound too.
//
// Score and ScoreParam are pure and do not allocate, so a rules engine can
// call them on every reading.
package news2
