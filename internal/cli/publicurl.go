package cli

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// parsePublicURL checks --public-url: an absolute http or https URL with a
// host and optionally a path prefix, nothing else; it is returned without
// a trailing slash ("" stays "").
func parsePublicURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %w", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q: use an http:// or https:// URL, e.g. https://tend.example.org", s)
	case u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return "", errors.New("the URL must not carry a user or password")
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#"):
		return "", fmt.Errorf("%q: a base URL has no query or fragment", s)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}
