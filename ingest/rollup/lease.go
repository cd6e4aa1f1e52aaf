package rollup

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// errLeaseExpired ends a session whose member may no longer be the owner
// of its partitions.
var errLeaseExpired = errors.New("rollup: no answer from the group coordinator for most of the session timeout; this member may have lost its partitions, so it writes nothing more in this session")

// lease tells whether this member may still write as the owner of its
// partitions. The group coordinator gives a member's partitions to another
// one only after it has heard nothing from it for the session timeout: a
// heartbeat, or a join or sync of the group, answered at all (even with
// REBALANCE_IN_PROGRESS) was received by the coordinator no earlier than it
// was sent, so the member keeps its partitions until at least that send
// time plus the session timeout. A member whose heartbeats stop getting
// through (a stalled or partitioned process, an overloaded broker) learns
// that it was removed only when one finally does, and in between it would
// go on writing batches of partitions whose new owner has already fenced
// and read the markers: those batches would count twice. So every insert
// first checks the lease: it is granted for three quarters of the session
// timeout after the last answered send; the quarter left (at least 1.5 s
// with the shortest sessions used) covers the insert reaching the server,
// where the new owner's fence (KILL QUERY ... SYNC) finds it, and the
// clocks of the two machines drifting apart. A member whose lease runs out
// ends its session and starts a new one from ClickHouse's markers. Heartbeats
// go every heartbeat interval (3 s by default, a fifteenth of the default
// 45 s session timeout), so a member that hears from the coordinator never
// sees its lease run out.
type lease struct {
	valid time.Duration
	last  atomic.Int64 // unix ns: send time of the latest answered request
	now   func() time.Time
}

func newLease() *lease { return &lease{now: time.Now} }

// grant sets the lease's length from the group's session timeout.
func (l *lease) grant(session time.Duration) { l.valid = session * 3 / 4 }

// OnBrokerE2E implements kgo.HookBrokerE2E: it renews the lease when a
// group membership request is answered.
func (l *lease) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	switch key {
	case kmsg.Heartbeat.Int16(), kmsg.JoinGroup.Int16(), kmsg.SyncGroup.Int16():
	default:
		return
	}
	if e2e.Err() != nil {
		return
	}
	l.renew(l.now().Add(-e2e.DurationE2E()))
}

// renew records an answered request sent at sent.
func (l *lease) renew(sent time.Time) {
	ns := sent.UnixNano()
	for {
		old := l.last.Load()
		if ns <= old || l.last.CompareAndSwap(old, ns) {
			return
		}
	}
}

// check returns errLeaseExpired once the lease has run out.
func (l *lease) check() error {
	last := l.last.Load()
	if last == 0 {
		return fmt.Errorf("%w (never heard from it)", errLeaseExpired)
	}
	if age := l.now().Sub(time.Unix(0, last)); age > l.valid {
		return fmt.Errorf("%w (last answer to a request sent %v ago, lease %v)", errLeaseExpired, age.Round(time.Millisecond), l.valid)
	}
	return nil
}
