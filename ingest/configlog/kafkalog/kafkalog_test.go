package kafkalog

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/configlog"
	"github.com/sluice-dev/sluice/ingest/configlog/logtest"
	"github.com/sluice-dev/sluice/internal/kafkatest"
)

// brokers returns a broker for the test (kafkatest).
func brokers(t *testing.T) []string {
	t.Helper()
	return kafkatest.Start(t).Addrs
}

func open(t *testing.T, bs []string, topic string) *Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := Open(ctx, Options{Brokers: bs, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestConformance(t *testing.T) {
	bs := brokers(t)
	logtest.Run(t, func(t *testing.T) configlog.Log {
		return open(t, bs, kafkatest.UniqueName("sluice.config.test"))
	})
}

// Two nodes on one topic see each other's appends in one order: the point
// of the Kafka log.
func TestTwoNodesConverge(t *testing.T) {
	bs := brokers(t)
	topic := fmt.Sprintf("sluice.config.two-%d", time.Now().UnixNano())
	a, b := open(t, bs, topic), open(t, bs, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	before := time.Now().Add(-time.Second) // record times are the producer's, in ms
	if _, err := a.Append(ctx, []configlog.Record{{Key: "tenant/x", Value: []byte(`{"id":"x"}`)}}); err != nil {
		t.Fatal(err)
	}
	end, err := b.Append(ctx, []configlog.Record{{Key: "tenant/x"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*Log{a, b} {
		var got []string
		err := l.Tail(ctx, 0, func(es []configlog.Entry) error {
			for _, e := range es {
				got = append(got, fmt.Sprintf("%s=%s", e.Key, e.Value))
				// Entries carry their append time (the change feed dates changes by it).
				if e.Time.Before(before) || e.Time.After(time.Now().Add(time.Second)) {
					t.Errorf("%s: record time %v, appended after %v", e.Key, e.Time, before)
				}
			}
			if es[len(es)-1].Pos >= end {
				return errStop
			}
			return nil
		})
		if err != errStop {
			t.Fatal(err)
		}
		if want := `tenant/x={"id":"x"} tenant/x=`; strings.Join(got, " ") != want {
			t.Errorf("read %q, want %q", strings.Join(got, " "), want)
		}
	}
}

var errStop = fmt.Errorf("stop")

func TestRefusesPartitionedTopic(t *testing.T) {
	bs := brokers(t)
	topic := fmt.Sprintf("sluice.config.multi-%d", time.Now().UnixNano())
	l := open(t, bs, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := l.adm.CreatePartitions(ctx, 1, topic); err != nil {
		t.Skipf("broker cannot add partitions: %v", err)
	}
	if _, err := Open(ctx, Options{Brokers: bs, Topic: topic}); err == nil || !strings.Contains(err.Error(), "exactly 1") {
		t.Fatalf("Open on a 2-partition topic = %v, want a refusal", err)
	}
}
