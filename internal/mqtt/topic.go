package mqtt

import "strings"

// validFilter reports whether f is a syntactically valid topic filter
// (MQTT 3.1.1 §4.7.1): '#' only as the whole last level, '+' only as a
// whole level. Length and UTF-8 are checked by the decoder.
func validFilter(f string) bool {
	if f == "" {
		return false
	}
	for {
		level, rest, more := strings.Cut(f, "/")
		if strings.ContainsAny(level, "+#") && level != "+" && level != "#" {
			return false
		}
		if level == "#" && more {
			return false
		}
		if !more {
			return true
		}
		f = rest
	}
}

// validTopicName reports whether t may be the topic of a PUBLISH: non-empty
// MQTT UTF-8 of at most 65535 bytes without wildcards (§4.7.3).
func validTopicName(t string) bool {
	return t != "" && len(t) <= 0xFFFF && !strings.ContainsAny(t, "+#") && validUTF8([]byte(t))
}

// matchTopic reports whether topic name t matches the valid filter f
// (§4.7): '+' matches exactly one level (possibly empty), '#' matches the
// parent level and any number of levels below it, and a wildcard in the
// first level does not match a topic starting with '$' (§4.7.2).
func matchTopic(f, t string) bool {
	if strings.HasPrefix(t, "$") && (strings.HasPrefix(f, "+") || strings.HasPrefix(f, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(t, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// "a/#" also matches "a".
			return frest == "#"
		case !fmore:
			return false
		}
		f, t = frest, trest
	}
}
