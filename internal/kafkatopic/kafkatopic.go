// Package kafkatopic creates the Kafka topics Sluice owns when they are
// missing, and waits until they can be used.
package kafkatopic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Ensure creates topic with the given partitions, replication factor (-1:
// the broker's default.replication.factor) and configs if it does not exist.
// An existing topic is left as it is. It returns once every partition of the
// topic has a leader — a topic just created is not usable at once on a real
// broker — with the topic's partition count and whether this call created it.
func Ensure(ctx context.Context, adm *kadm.Client, topic string, partitions int32, rf int16, configs map[string]*string) (n int, created bool, err error) {
	res, err := adm.CreateTopic(ctx, partitions, rf, configs, topic)
	switch {
	case err != nil && !errors.Is(err, kerr.TopicAlreadyExists):
		return 0, false, fmt.Errorf("create topic %s: %w", topic, err)
	case err == nil && res.Err == nil:
		created = true
	case err == nil && !errors.Is(res.Err, kerr.TopicAlreadyExists):
		return 0, false, fmt.Errorf("create topic %s: %w", topic, res.Err)
	}
	for {
		n, err = usable(ctx, adm, topic)
		if err == nil {
			return n, created, nil
		}
		select {
		case <-ctx.Done():
			return 0, created, fmt.Errorf("topic %s not usable: %w", topic, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// usable returns the topic's partition count if every partition has a leader.
func usable(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	md, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, err
	}
	td, ok := md[topic]
	switch {
	case !ok:
		return 0, kerr.UnknownTopicOrPartition
	case td.Err != nil:
		return 0, td.Err
	case len(td.Partitions) == 0:
		return 0, errors.New("no partitions yet")
	}
	for _, p := range td.Partitions {
		if p.Err != nil {
			return 0, fmt.Errorf("partition %d: %w", p.Partition, p.Err)
		}
		if p.Leader < 0 {
			return 0, fmt.Errorf("partition %d has no leader", p.Partition)
		}
	}
	return len(td.Partitions), nil
}
