package rollup

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestLease(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name    string
		key     int16
		e2e     kgo.BrokerE2E
		at      time.Duration // when the answer is read, after t0
		checkAt time.Duration // when the writer asks, after t0
		wantOK  bool
	}{
		{"heartbeat answered, inside the lease", kmsg.Heartbeat.Int16(), kgo.BrokerE2E{ReadWait: 200 * time.Millisecond}, time.Second, 5 * time.Second, true},
		{"the lease counts from the send, not the answer", kmsg.Heartbeat.Int16(), kgo.BrokerE2E{ReadWait: 2 * time.Second}, 2 * time.Second, 4600 * time.Millisecond, false},
		{"heartbeat answered, lease run out", kmsg.Heartbeat.Int16(), kgo.BrokerE2E{}, time.Second, 5600 * time.Millisecond, false},
		{"sync group renews", kmsg.SyncGroup.Int16(), kgo.BrokerE2E{}, time.Second, 5 * time.Second, true},
		{"join group renews", kmsg.JoinGroup.Int16(), kgo.BrokerE2E{}, time.Second, 5 * time.Second, true},
		{"an unanswered heartbeat does not renew", kmsg.Heartbeat.Int16(), kgo.BrokerE2E{ReadErr: errors.New("i/o timeout")}, time.Second, 2 * time.Second, false},
		{"a fetch does not renew", kmsg.Fetch.Int16(), kgo.BrokerE2E{}, time.Second, 2 * time.Second, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			l := newLease()
			l.now = func() time.Time { return now }
			l.grant(6 * time.Second) // valid 4.5 s after the send
			now = t0.Add(tc.at)
			l.OnBrokerE2E(kgo.BrokerMetadata{}, tc.key, tc.e2e)
			now = t0.Add(tc.checkAt)
			err := l.check()
			if (err == nil) != tc.wantOK {
				t.Fatalf("check: %v, want ok %v", err, tc.wantOK)
			}
			if err != nil && !errors.Is(err, errLeaseExpired) {
				t.Fatalf("check: %v, want errLeaseExpired", err)
			}
		})
	}
}

// TestLeaseKeepsTheLatestSend checks that an answer to an older request,
// read late, does not shorten the lease.
func TestLeaseKeepsTheLatestSend(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := newLease()
	l.now = func() time.Time { return now }
	l.grant(6 * time.Second)
	l.OnBrokerE2E(kgo.BrokerMetadata{}, kmsg.Heartbeat.Int16(), kgo.BrokerE2E{}) // sent at now
	now = now.Add(time.Second)
	l.OnBrokerE2E(kgo.BrokerMetadata{}, kmsg.Heartbeat.Int16(), kgo.BrokerE2E{ReadWait: 3 * time.Second}) // sent 2 s before the first
	now = now.Add(3 * time.Second)                                                                        // 4 s after the first send
	if err := l.check(); err != nil {
		t.Fatal(err)
	}
}
