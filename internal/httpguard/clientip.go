package httpguard

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ParseProxies parses a comma-separated list of proxy addresses or CIDR
// prefixes (e.g. "10.0.0.0/8,192.0.2.7") whose X-Forwarded-For is trusted.
func ParseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, err
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, err
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func trusted(a netip.Addr, proxies []netip.Prefix) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr is the address a request is accounted to: the TCP peer, or,
// when the peer is a trusted proxy, the nearest address in X-Forwarded-For
// that is not itself a trusted proxy. Entries are read from the right
// (the ones the trusted proxies appended), since anything to the left may
// have been written by the client. The second result reports whether the
// request came through a trusted proxy.
func ClientAddr(r *http.Request, proxies []netip.Prefix) (netip.Addr, bool) {
	peer := remoteAddr(r.RemoteAddr)
	if len(proxies) == 0 || !peer.IsValid() || !trusted(peer, proxies) {
		return peer, false
	}
	return forwardedFor(peer, r.Header.Values("X-Forwarded-For"), proxies), true
}

// forwardedFor walks the X-Forwarded-For values from the right. An entry
// that does not parse ends the walk at the last hop known to be good.
func forwardedFor(peer netip.Addr, values []string, proxies []netip.Prefix) netip.Addr {
	client := peer
	for i := len(values) - 1; i >= 0; i-- {
		parts := strings.Split(values[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return client
			}
			client = a.Unmap().WithZone("")
			if !trusted(client, proxies) {
				return client
			}
		}
	}
	return client
}

func remoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = s
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// clientKey groups IPv6 clients by /64, the block one subscriber usually
// gets: otherwise one host could take a fresh budget per address.
func clientKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}
