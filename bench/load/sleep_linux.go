package load

import (
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// precise sleeps on a timerfd: the kernel wakes the runtime's poller
// when it expires, within microseconds, where the runtime's own timers wait
// in epoll with a timeout in whole milliseconds and so wake up to a
// millisecond late. No thread or P is held while it sleeps.
type precise struct {
	f  *os.File // nil: no timerfd, use the runtime's timers
	fd int
}

func startPrecise() *precise {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return &precise{}
	}
	return &precise{f: os.NewFile(uintptr(fd), "timerfd"), fd: fd}
}

func (p *precise) stop() {
	if p.f != nil {
		p.f.Close()
	}
}

// sleepUntil returns at t, or when ctx ends (checked every 100 ms).
func (p *precise) sleepUntil(ctx context.Context, t time.Time) {
	if p.f == nil {
		timerSleepUntil(ctx, t)
		return
	}
	var buf [8]byte
	for ctx.Err() == nil {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(min(d, 100*time.Millisecond)))}
		if unix.TimerfdSettime(p.fd, 0, &spec, nil) != nil {
			timerSleepUntil(ctx, t)
			return
		}
		if _, err := p.f.Read(buf[:]); err != nil {
			timerSleepUntil(ctx, t)
			return
		}
	}
}
