package rollup

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// TestRebalanceExactlyOnce runs the rollup as a group of processes whose
// membership keeps changing while events flow: members join (the group
// rebalances and partitions move between live members, each possibly with a
// batch in hand), leave on SIGTERM or die on SIGKILL (their partitions move
// once the session times out, while a dead member's last insert may still be
// on the server). The totals in every rollup table must still equal the
// events produced, once each.
func TestRebalanceExactlyOnce(t *testing.T) {
	ch, conn := startCH(t)
	brokers := startKafka(t, 6)
	logf := childrenLog(t)

	const events = 150_000
	g, m := newGen(23), newModel()
	producing := produceInBackground(t, brokers, g, m, events, 80*time.Millisecond) // ≈ 12 s

	// A short session so that the partitions of a member that is gone move
	// within seconds (static members do not leave the group on close).
	session := "SLUICE_ROLLUP_SESSION=6s"
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	live := map[string]*child{}
	next := 0
	start := func() {
		name := fmt.Sprintf("m%d", next)
		next++
		live[name] = startChild(t, brokers, ch.Addr(), logf, name, session)
	}
	pick := func() string {
		for name := range live {
			return name
		}
		return ""
	}
	defer func() {
		for _, c := range live {
			c.kill()
		}
	}()
	start()
	start()
	var joins, terms, kills int
	for done := false; !done; {
		time.Sleep(time.Duration(700+rng.IntN(1300)) * time.Millisecond)
		select {
		case <-producing:
			done = joins >= 4 && terms+kills >= 3
		default:
		}
		switch {
		case len(live) < 2 || (len(live) < 4 && rng.IntN(2) == 0):
			start()
			joins++
		case rng.IntN(2) == 0:
			name := pick()
			live[name].cmd.Process.Signal(syscall.SIGTERM)
			<-live[name].done
			delete(live, name)
			terms++
		default:
			name := pick()
			live[name].kill()
			delete(live, name)
			kills++
		}
	}
	<-producing
	for len(live) < 2 {
		start()
	}
	t.Logf("membership changes while events flowed: %d joins, %d SIGTERMs, %d SIGKILLs; %d members at the end", joins, terms, kills, len(live))

	ends := endOffsets(t, brokers)
	waitCaughtUp(t, conn, ends, 120*time.Second)
	for name, c := range live {
		c.cmd.Process.Signal(syscall.SIGTERM)
		<-c.done
		delete(live, name)
	}
	checkTables(t, conn, m)
	checkRaw(t, conn, m)
}
