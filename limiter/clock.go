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

// sharedClock is the Clock of limiters created without one.
var sharedClock autoClock

// autoClock is a millisecond clock like CoarseClock whose refreshing
// goroutine starts on the first read and stops after idleTicks ticks without
// one, so that an idle process does not wake up every millisecond. A read
// while it is stopped (re)starts it and returns time.Now.
type autoClock struct {
	ns      atomic.Int64
	running atomic.Bool
	_       [48]byte // read is written by every tick: keep it off ns's line
	read    atomic.Bool
	mu      sync.Mutex // serializes starting and stopping
}

const idleTicks = 100

// nowNs returns the unix nanoseconds of the last refresh (at most about a
// millisecond old while running).
func (c *autoClock) nowNs() int64 {
	if !c.running.Load() {
		return c.start()
	}
	if !c.read.Load() {
		c.read.Store(true)
	}
	return c.ns.Load()
}

// fresh is nowNs when the clock is running and has been read since its
// last tick, the common case, small enough to inline; ok is false otherwise
// (call nowNs).
func (c *autoClock) fresh() (ns int64, ok bool) {
	if c.running.Load() && c.read.Load() {
		return c.ns.Load(), true
	}
	return 0, false
}

func (c *autoClock) start() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now().UnixNano()
	if !c.running.Load() {
		c.ns.Store(now)
		c.read.Store(true)
		c.running.Store(true)
		go c.run()
	}
	return now
}

func (c *autoClock) run() {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	idle := 0
	for range t.C {
		c.ns.Store(time.Now().UnixNano())
		if c.read.Swap(false) {
			idle = 0
			continue
		}
		if idle++; idle < idleTicks {
			continue
		}
		c.mu.Lock()
		stop := !c.read.Load()
		if stop {
			c.running.Store(false)
		}
		c.mu.Unlock()
		if stop {
			return
		}
		idle = 0
	}
}

// now is the instant of a call: one read of the limiter's clock.
func (l *Limiter) now() instant {
	if l.clock == nil {
		ns := sharedClock.nowNs()
		return instant{sec: floorDiv(ns, int64(time.Second)), ns: ns}
	}
	return instantOf(l.clock())
}
