package limiter

import (
	"testing"
	"time"
)

func TestCoarseClock(t *testing.T) {
	c := NewCoarseClock(time.Millisecond)
	defer c.Stop()
	first := c.Now()
	if d := time.Since(first); d < 0 || d > time.Second {
		t.Fatalf("coarse clock is %v off", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !c.Now().After(first) {
		if time.Now().After(deadline) {
			t.Fatal("coarse clock does not advance")
		}
		time.Sleep(time.Millisecond)
	}
	c.Stop()
	c.Stop() // idempotent
}
