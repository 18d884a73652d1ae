package gatt

import (
	"testing"

	"github.com/tendhealth/tend/internal/senml"
)

// BenchmarkDecode measures a typical gateway flush: ten characteristic
// values (heart rate, blood pressure, SpO2, temperature, weight, CGM).
func BenchmarkDecode(b *testing.B) {
	payload := []byte(`[
{"uuid":"2A37","hex":"0648","t":1795424340.1},{"uuid":"2A37","hex":"0649","t":1795424341.1},
{"uuid":"2A37","hex":"064a","t":1795424342.1},{"uuid":"2A37","hex":"064b","t":1795424343.1},
{"uuid":"2A35","hex":"1e780050005d00ea070b17091e004800012700","tz":"+01:00"},
{"uuid":"2A5F","hex":"096100400060004100200000","t":1795424344},
{"uuid":"2A1C","base64":"AdoDAP8=","t":1795424345},
{"uuid":"2A9D","hex":"08b036e500d606","t":1795424346},
{"uuid":"2AA7","hex":"0fe3d2e405000214ff02f0e5f38e3f","t":1795424347},
{"uuid":"2A5E","base64":"AGEAQAA=","t":1795424348}]`)
	if _, err := Decode(payload, now, senml.DefaultLimits); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(payload, now, senml.DefaultLimits); err != nil {
			b.Fatal(err)
		}
	}
}
