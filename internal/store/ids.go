package store

// ValidDeviceID reports whether id may name a device. A device id becomes
// an MQTT user name and topic level (tend/v1/devices/{id}/...) and may end
// up in NATS subjects, so it is limited to letters, digits, '-' and '_':
// no MQTT wildcards ('+', '#') or separator ('/'), no NATS wildcards ('*',
// '>') or separator ('.'), no spaces or control characters.
func ValidDeviceID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
