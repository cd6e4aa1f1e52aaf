//go:build !linux

package load

import (
	"context"
	"time"
)

// precise is the runtime's timers where no finer sleep is at hand.
type precise struct{}

func startPrecise() *precise { return &precise{} }

func (*precise) stop() {}

// sleepUntil returns at t, or when ctx ends.
func (*precise) sleepUntil(ctx context.Context, t time.Time) { timerSleepUntil(ctx, t) }
