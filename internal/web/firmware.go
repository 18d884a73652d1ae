package web

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Firmware revisions come from the FHIR Device resource: Device.version
// entries whose type is the ISO/IEEE 11073-10101 code MDC_ID_PROD_SPEC_FW
// (531976), as the HL7 Personal Health Device IG records them, or whose
// type text or display says "firmware". Other version entries (hardware,
// software, untyped) are shown as they are when no firmware is named.

const (
	mdcSystem    = "urn:iso:std:iso:11073:10101"
	mdcFirmware  = "531976" // MDC_ID_PROD_SPEC_FW
	maxVersions  = 4        // entries shown per device
	maxVersionSz = 64       // bytes of one entry shown
)

type fhirVersion struct {
	Type *struct {
		Coding []struct {
			System  string `json:"system"`
			Code    string `json:"code"`
			Display string `json:"display"`
		} `json:"coding"`
		Text string `json:"text"`
	} `json:"type"`
	Value string `json:"value"`
}

// deviceVersions reads a Device resource's version entries: the firmware
// revisions, and the other entries as "label value".
func deviceVersions(resource []byte) (firmware, other string) {
	var res struct {
		Version []fhirVersion `json:"version"`
	}
	if len(resource) == 0 || json.Unmarshal(resource, &res) != nil {
		return "", ""
	}
	var fw, rest []string
	for _, v := range res.Version {
		val := clipVersion(strings.TrimSpace(v.Value))
		if val == "" {
			continue
		}
		label, isFW := versionLabel(v)
		switch {
		case isFW:
			fw = appendMax(fw, val)
		case label != "":
			rest = appendMax(rest, clipVersion(label)+" "+val)
		default:
			rest = appendMax(rest, val)
		}
	}
	return strings.Join(fw, ", "), strings.Join(rest, ", ")
}

func versionLabel(v fhirVersion) (label string, firmware bool) {
	if v.Type == nil {
		return "", false
	}
	label = v.Type.Text
	for _, c := range v.Type.Coding {
		if c.System == mdcSystem && c.Code == mdcFirmware {
			return label, true
		}
		if label == "" {
			label = c.Display
		}
		if label == "" {
			label = c.Code
		}
		if strings.Contains(strings.ToLower(c.Display), "firmware") || c.Display == "MDC_ID_PROD_SPEC_FW" {
			return label, true
		}
	}
	return label, strings.Contains(strings.ToLower(v.Type.Text), "firmware")
}

func appendMax(list []string, s string) []string {
	if len(list) >= maxVersions {
		return list
	}
	return append(list, s)
}

func clipVersion(s string) string {
	if len(s) <= maxVersionSz {
		return s
	}
	cut := maxVersionSz
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
