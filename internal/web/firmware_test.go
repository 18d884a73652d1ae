package web

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tendhealth/tend/internal/store"
)

func TestDeviceVersions(t *testing.T) {
	tests := []struct {
		name, resource, firmware, other string
	}{
		{"none", `{"resourceType":"Device"}`, "", ""},
		{"not JSON", `{"version":`, "", ""},
		{"MDC firmware code", `{"version":[{"type":{"coding":[{"system":"urn:iso:std:iso:11073:10101","code":"531976"}]},"value":"2.4.1"}]}`, "2.4.1", ""},
		{"firmware in the text", `{"version":[{"type":{"text":"Firmware revision"},"value":"v7"}]}`, "v7", ""},
		{"firmware in a display", `{"version":[{"type":{"coding":[{"system":"urn:example","code":"fw","display":"Firmware"}]},"value":"1.0"}]}`, "1.0", ""},
		{"hardware and software only", `{"version":[{"type":{"coding":[{"system":"urn:iso:std:iso:11073:10101","code":"531974","display":"MDC_ID_PROD_SPEC_HW"}]},"value":"B"},{"type":{"text":"software"},"value":"3.2"}]}`,
			"", "MDC_ID_PROD_SPEC_HW B, software 3.2"},
		{"untyped", `{"version":[{"value":"1.2.3"},{"value":"  "}]}`, "", "1.2.3"},
		{"firmware and more", `{"version":[{"value":"x"},{"type":{"coding":[{"system":"urn:iso:std:iso:11073:10101","code":"531976"}]},"value":"9"}]}`, "9", "x"},
		{"code without the MDC system", `{"version":[{"type":{"coding":[{"code":"531976"}]},"value":"9"}]}`, "", "531976 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fw, other := deviceVersions([]byte(tt.resource))
			if fw != tt.firmware || other != tt.other {
				t.Errorf("got (%q, %q), want (%q, %q)", fw, other, tt.firmware, tt.other)
			}
		})
	}
	long := `{"version":[{"type":{"text":"firmware"},"value":"` + strings.Repeat("é", 100) + `"}]}`
	if fw, _ := deviceVersions([]byte(long)); !utf8.ValidString(fw) || len(fw) > maxVersionSz+len("…") {
		t.Errorf("a long version is shown as %q", fw)
	}
}

func FuzzDeviceVersions(f *testing.F) {
	f.Add([]byte(`{"version":[{"type":{"coding":[{"system":"urn:iso:std:iso:11073:10101","code":"531976"}]},"value":"2.4.1"}]}`))
	f.Add([]byte(`{"version":[{"value":"1"},{"type":null,"value":""}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fw, other := deviceVersions(b)
		if len(fw) > maxVersions*(maxVersionSz+8) || len(other) > maxVersions*(2*maxVersionSz+16) {
			t.Errorf("unbounded output: %d, %d bytes", len(fw), len(other))
		}
	})
}

// TestDevicesFirmwareColumn: the fleet list shows each device's firmware
// from its FHIR resource, as text.
func TestDevicesFirmwareColumn(t *testing.T) {
	f := orgFixture(t)
	ctx := context.Background()
	for id, res := range map[string]string{
		"fw-ok":   `{"resourceType":"Device","version":[{"type":{"coding":[{"system":"urn:iso:std:iso:11073:10101","code":"531976"}]},"value":"FW 4.2.0"}]}`,
		"fw-evil": `{"resourceType":"Device","version":[{"type":{"text":"firmware"},"value":"<script>alert(1)</script>"}]}`,
		"fw-none": `{"resourceType":"Device","version":[{"value":"rev C"}]}`,
	} {
		if err := f.st.CreateDevice(ctx, &store.Device{ID: id, Org: "north", Patient: "n-a", Resource: []byte(res)}, epoch); err != nil {
			t.Fatal(err)
		}
	}
	_, body := f.as(t, "nadia").get("/devices")
	for _, want := range []string{"<th scope=\"col\">Firmware</th>", "FW 4.2.0", "&lt;script&gt;alert(1)&lt;/script&gt;", "rev C"} {
		if !strings.Contains(body, want) {
			t.Errorf("the devices page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>alert(1)") {
		t.Error("a hostile firmware string is not escaped")
	}
}
