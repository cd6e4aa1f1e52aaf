package limiter

import (
	"sync"
	"sync/atomic"
	"time"
)

// CoarseClock is a Clock source that a background goroutine refreshes every
// resolution. Reading it is an atomic load instead of a clock_gettime call,
// which costs ~60ns on the virtual machines measured in bench/RESULTS.md and,
// worse, waits for the CPU's outstanding memory loads, so that consecutive
// calls cannot overlap their cache misses. Limits are at least a second
// long, so a millisecond of resolution changes nothing a client can tell:
// a call at most one resolution late in its window.
type CoarseClock struct {
	ns   atomic.Int64
	stop chan struct{}
	once sync.Once
}

// NewCoarseClock starts a CoarseClock; resolution <= 0 means 1ms. Call Stop
// when done with it.
func NewCoarseClock(resolution time.Duration) *CoarseClock {
	if resolution <= 0 {
		resolution = time.Millisecond
	}
	c := &CoarseClock{stop: make(chan struct{})}
	c.ns.Store(time.Now().UnixNano())
	go func() {
		t := time.NewTicker(resolution)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				c.ns.Store(now.UnixNano())
			case <-c.stop:
				return
			}
		}
	}()
	return c
}

// Now returns the time of the last refresh. Use it as Options.Clock.
func (c *CoarseClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Stop ends the refreshing goroutine; Now keeps returning the last time.
func (c *CoarseClock) Stop() { c.once.Do(func() { close(c.stop) }) }
