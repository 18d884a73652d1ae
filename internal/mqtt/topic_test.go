package mqtt

import (
	"strings"
	"testing"
)

// TestMatchTopic follows the examples of MQTT 3.1.1 §4.7 and 5.0 §4.7.
func TestMatchTopic(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"tend/v1/devices/d/cmd", "tend/v1/devices/d/cmd", true},
		{"tend/v1/devices/d/cmd", "tend/v1/devices/d/cmd/x", false},
		{"tend/v1/devices/d/cmd", "tend/v1/devices/d", false},
		{"tend/v1/devices/d/cmd", "tend/v1/devices/dd/cmd", false},
		{"Tend/v1/devices/d/cmd", "tend/v1/devices/d/cmd", false}, // case sensitive
		{"sport/tennis/player1/#", "sport/tennis/player1", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
		{"sport/tennis/player1/#", "sport/tennis/player2", false},
		{"sport/#", "sport", true},
		{"#", "sport/tennis", true},
		{"#", "/", true},
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/tennis/+", "sport/tennis/", true}, // '+' matches an empty level
		{"sport/tennis/+", "sport/tennis", false},
		{"sport/+", "sport", false},
		{"sport/+", "sport/", true},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"+", "/finance", false},
		{"+", "finance", true},
		{"+/tennis/#", "sport/tennis/player1", true},
		{"+/tennis/#", "sport/golf", false},
		{"a/+/c", "a//c", true},
		{"a//c", "a//c", true},
		{"a//c", "a/b/c", false},
		// $-topics are not matched by a wildcard in the first level.
		{"#", "$SYS/broker/clients", false},
		{"+/monitor/Clients", "$SYS/monitor/Clients", false},
		{"$SYS/#", "$SYS/monitor/Clients", true},
		{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
		{"a/#", "a/$b", true}, // only the first level is special
	}
	for _, tt := range tests {
		if !validFilter(tt.filter) {
			t.Fatalf("test filter %q is not valid", tt.filter)
		}
		if got := matchTopic(tt.filter, tt.topic); got != tt.want {
			t.Errorf("matchTopic(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	tests := []struct {
		filter string
		want   bool
	}{
		{"a/b", true},
		{"#", true},
		{"+", true},
		{"a/#", true},
		{"+/+/#", true},
		{"/", true},
		{"a//b", true},
		{"", false},
		{"a/#/b", false},
		{"a#", false},
		{"a/b#", false},
		{"a+", false},
		{"a/+b/c", false},
		{"##", false},
		{"#/", false},
	}
	for _, tt := range tests {
		if got := validFilter(tt.filter); got != tt.want {
			t.Errorf("validFilter(%q) = %v, want %v", tt.filter, got, tt.want)
		}
	}
}

func TestValidTopicName(t *testing.T) {
	tests := []struct {
		topic string
		want  bool
	}{
		{"tend/v1/devices/d/cmd", true},
		{"/", true},
		{"", false},
		{"a/+", false},
		{"a/#", false},
		{"a\x00b", false},
		{"a\xffb", false},
		{strings.Repeat("a", 0xFFFF), true},
		{strings.Repeat("a", 0x10000), false},
	}
	for _, tt := range tests {
		if got := validTopicName(tt.topic); got != tt.want {
			t.Errorf("validTopicName(%.20q) = %v, want %v", tt.topic, got, tt.want)
		}
	}
}

// FuzzMatchTopic checks filter matching against properties that hold for
// every input: no panics, a filter without wildcards matches only itself,
// "#" matches every topic not starting with '$', and a filter matches a
// topic only if their level counts are compatible.
func FuzzMatchTopic(f *testing.F) {
	f.Add("tend/v1/devices/+/cmd", "tend/v1/devices/d/cmd")
	f.Add("a/#", "a")
	f.Add("+/+", "/x")
	f.Add("#", "$SYS/x")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		if !validFilter(filter) || !validTopicName(topic) {
			return
		}
		got := matchTopic(filter, topic)
		if !strings.ContainsAny(filter, "+#") && got != (filter == topic) {
			t.Fatalf("matchTopic(%q, %q) = %v without wildcards", filter, topic, got)
		}
		if filter == "#" && got == strings.HasPrefix(topic, "$") {
			t.Fatalf("matchTopic(#, %q) = %v", topic, got)
		}
		fl, tl := strings.Count(filter, "/")+1, strings.Count(topic, "/")+1
		if got && !strings.HasSuffix(filter, "#") && fl != tl {
			t.Fatalf("matchTopic(%q, %q): %d levels matched %d", filter, topic, fl, tl)
		}
		if got && strings.HasSuffix(filter, "#") && tl < fl-1 {
			t.Fatalf("matchTopic(%q, %q): too few levels", filter, topic)
		}
	})
}
