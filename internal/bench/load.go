package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// drainTimeout bounds how long senders wait for outstanding acks after the
// measured window closed; what is still unacknowledged then is an error.
const drainTimeout = 30 * time.Second

// phases is the clock of one load run: warmup, measured window, drain.
type phases struct {
	now   func() time.Time
	start time.Time
	win   window
	stop  chan struct{} // closed when the window ends: send no more
	abort chan struct{} // closed when the drain time is up or ctx is done
	acked atomic.Int64  // readings acked so far, for progress lines
}

// startPhases starts the timers of a run; atWindowStart (may be nil) runs
// once the warmup is over. Call finish when the senders are done; it returns
// after atWindowStart did.
func startPhases(ctx context.Context, cfg Config, label string, atWindowStart func()) (*phases, func()) {
	p := &phases{now: cfg.Now, stop: make(chan struct{}), abort: make(chan struct{})}
	p.start = cfg.Now()
	p.win = window{from: p.start.Add(cfg.Warmup), to: p.start.Add(cfg.Warmup + cfg.Duration)}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		windowStart := time.NewTimer(cfg.Warmup)
		defer windowStart.Stop()
		end := time.NewTimer(cfg.Warmup + cfg.Duration)
		defer end.Stop()
		var drain <-chan time.Time
		var last int64
		for {
			select {
			case <-windowStart.C:
				if atWindowStart != nil {
					// In its own goroutine so a slow call cannot delay the
					// end of the window.
					wg.Add(1)
					go func() {
						defer wg.Done()
						atWindowStart()
					}()
				}
			case <-end.C:
				close(p.stop)
				t := time.NewTimer(drainTimeout)
				defer t.Stop()
				drain = t.C
			case <-drain:
				close(p.abort)
				<-done
				return
			case <-ctx.Done():
				select {
				case <-p.stop:
				default:
					close(p.stop)
				}
				close(p.abort)
				<-done
				return
			case <-done:
				return
			case <-tick.C:
				n := p.acked.Load()
				el := cfg.Now().Sub(p.start).Truncate(time.Second)
				phase := "measuring"
				switch {
				case el < cfg.Warmup:
					phase = "warmup"
				case el >= cfg.Warmup+cfg.Duration:
					phase = "draining"
				}
				fmt.Fprintf(cfg.Out, "%s %4s %-9s acked %10d readings  %8.0f readings/s\n", label, el, phase, n, float64(n-last))
				last = n
			}
		}
	}()
	return p, func() {
		close(done)
		wg.Wait()
	}
}
