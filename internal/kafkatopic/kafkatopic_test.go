package kafkatopic

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/kafkatest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// admin returns a client of the test's broker (kafkatest), without topics
// when it is kfake.
func admin(t *testing.T) *kadm.Client {
	t.Helper()
	bs := kafkatest.Start(t).Addrs
	cl, err := kgo.NewClient(kgo.SeedBrokers(bs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// TestExternalEnsure (also run against Apache Kafka by make test-kafka): a
// missing topic is created with the partitions asked for and is usable at
// once; an existing one is left as it is, whatever is asked.
func TestExternalEnsure(t *testing.T) {
	adm := admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := fmt.Sprintf("sluice.topic-test.%d", time.Now().UnixNano())
	for _, tc := range []struct {
		partitions  int32
		wantN       int
		wantCreated bool
	}{
		{5, 5, true},
		{7, 5, false},
		{1, 5, false},
	} {
		n, created, err := Ensure(ctx, adm, topic, tc.partitions, -1, nil)
		if err != nil || n != tc.wantN || created != tc.wantCreated {
			t.Fatalf("Ensure(%d partitions) = %d, %v, %v; want %d, %v", tc.partitions, n, created, err, tc.wantN, tc.wantCreated)
		}
	}
	// Usable at once: every partition has a leader that answers.
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("end offsets right after creation: %v, %v", err, ends.Error())
	}
	if got := len(ends[topic]); got != 5 {
		t.Fatalf("end offsets of %d partitions, want 5", got)
	}
}

func TestEnsureUnreachable(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, _, err := Ensure(ctx, kadm.NewClient(cl), event.Topic, 3, -1, nil); err == nil {
		t.Fatal("Ensure with no broker succeeded")
	}
}
