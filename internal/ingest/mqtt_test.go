package ingest

import "testing"

func TestMQTTAuthorizeSubscribe(t *testing.T) {
	tests := []struct {
		name, username, filter string
		want                   bool
	}{
		{"own command topic", "dev1", "tend/v1/devices/dev1/cmd", true},
		{"another device", "dev1", "tend/v1/devices/dev2/cmd", false},
		{"prefix of own id", "dev1", "tend/v1/devices/dev/cmd", false},
		{"longer id", "dev", "tend/v1/devices/dev1/cmd", false},
		{"own uplink topic", "dev1", "tend/v1/devices/dev1/obs", false},
		{"below own command topic", "dev1", "tend/v1/devices/dev1/cmd/x", false},
		{"single-level wildcard for own id", "dev1", "tend/v1/devices/+/cmd", false},
		{"multi-level wildcard under own id", "dev1", "tend/v1/devices/dev1/#", false},
		{"everything", "dev1", "#", false},
		{"case differs", "dev1", "tend/v1/devices/DEV1/cmd", false},
		{"shared subscription", "dev1", "$share/g/tend/v1/devices/dev1/cmd", false},
		{"wildcard in device id", "+", "tend/v1/devices/+/cmd", false},
		{"hash device id", "#", "tend/v1/devices/#/cmd", false},
		{"slash in device id", "a/b", "tend/v1/devices/a/b/cmd", false},
		{"empty device id", "", "tend/v1/devices//cmd", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (MQTT{}).AuthorizeSubscribe(tt.username, tt.filter); got != tt.want {
				t.Fatalf("AuthorizeSubscribe(%q, %q) = %v, want %v", tt.username, tt.filter, got, tt.want)
			}
		})
	}
	if got := CommandTopic("dev1"); got != "tend/v1/devices/dev1/cmd" {
		t.Fatalf("CommandTopic = %q", got)
	}
}
