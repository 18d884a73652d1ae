package web

import "time"

// Live updates: each page's event stream subscribes to the live hub,
// applies events to its own copy of the page's state and, at most every
// coalesce interval, sends the parts that changed, already rendered. A
// burst of readings for one patient becomes one update, and a row never
// needs a query to redraw.
var (
	coalesce = 100 * time.Millisecond
	ssePing  = 15 * time.Second
)
