// Package kafkatest gives a test a Kafka broker: franz-go's kfake in this
// process on a real TCP port, or, when SLUICE_KAFKA_BROKERS names one (make
// test-kafka runs Apache Kafka), that external broker, with topics of the
// test's own so that tests never see each other's records. It is the one way
// the tests of every package get a broker.
package kafkatest

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ExternalEnv names the variable holding an external broker's addresses.
const ExternalEnv = "SLUICE_KAFKA_BROKERS"

// Broker is a broker for one test.
type Broker struct {
	// Addrs are the seed brokers.
	Addrs []string
	// Fake is the in-process broker, nil when the broker is external.
	Fake *kfake.Cluster
}

// External returns the brokers of SLUICE_KAFKA_BROKERS, nil if unset.
func External() []string {
	if s := os.Getenv(ExternalEnv); s != "" {
		return strings.Split(s, ",")
	}
	return nil
}

// Start returns the external broker if there is one, else starts kfake with
// opts (one broker on a free port unless opts say otherwise), closed when the
// test ends. Under -short it skips the test.
func Start(t testing.TB, opts ...kfake.Opt) *Broker {
	t.Helper()
	if ext := External(); ext != nil {
		return &Broker{Addrs: ext}
	}
	return StartFake(t, opts...)
}

// StartFake starts kfake with opts (one broker on a free port unless opts
// say otherwise), closed when the test ends, even when an external broker is
// set: for tests that need brokers of their own, such as one per region.
// Under -short it skips the test.
func StartFake(t testing.TB, opts ...kfake.Opt) *Broker {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts an in-process Kafka broker (kfake)")
	}
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.Ports(0)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &Broker{Addrs: c.ListenAddrs(), Fake: c}
}

var seq atomic.Int64

// UniqueName returns base followed by a suffix no other call in this process
// or an earlier one returns.
func UniqueName(base string) string {
	return base + "." + strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.FormatInt(seq.Add(1), 36)
}

// keepForever is the retention.ms of test topics.
var keepForever = "-1"

// Topic creates a topic named base on kfake, or a fresh uniquely named one
// on an external broker (deleted when the test ends), with the given
// partitions, and returns its name. The topic keeps its records forever
// (retention.ms -1): tests produce records stamped with fixed dates, which a
// broker's default seven-day retention would delete while the test runs
// once those dates are a week old.
func (b *Broker) Topic(t testing.TB, base string, partitions int32) string {
	t.Helper()
	name := base
	if b.Fake == nil {
		name = UniqueName(base)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, map[string]*string{"retention.ms": &keepForever}, name); err != nil {
		t.Fatalf("create topic %s on %v: %v", name, b.Addrs, err)
	}
	if b.Fake == nil {
		t.Cleanup(func() {
			cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs...))
			if err == nil {
				kadm.NewClient(cl).DeleteTopics(context.Background(), name)
				cl.Close()
			}
		})
	}
	return name
}
