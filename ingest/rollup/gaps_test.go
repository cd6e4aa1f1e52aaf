package rollup

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestGaps(t *testing.T) {
	type step struct {
		off           int64
		missing, from int64
		behind        bool
	}
	for _, tc := range []struct {
		name   string
		expect int64 // -1: no expectation
		steps  []step
	}{
		{"dense", 10, []step{{10, 0, 0, false}, {11, 0, 0, false}, {12, 0, 0, false}}},
		{"start of log deleted", 0, []step{{500, 500, 0, false}, {501, 0, 0, false}}},
		{"deleted mid-session", 10, []step{{10, 0, 0, false}, {40, 29, 11, false}, {41, 0, 0, false}}},
		{"log behind the markers", 900, []step{{0, 0, 0, true}, {1, 0, 0, false}}},
		{"not assigned", -1, []step{{7, 0, 0, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g gaps
			if tc.expect >= 0 {
				g.expect(3, tc.expect)
			}
			for _, s := range tc.steps {
				missing, from, behind := g.see(3, s.off)
				if missing != s.missing || from != s.from || behind != s.behind {
					t.Errorf("see(%d) = %d, %d, %v; want %d, %d, %v", s.off, missing, from, behind, s.missing, s.from, s.behind)
				}
			}
			g.forget([]int32{3})
			if missing, _, behind := g.see(3, 1<<40); missing != 0 || behind {
				t.Errorf("a forgotten partition still reports (%d, %v)", missing, behind)
			}
		})
	}
}

// TestRecordsDeletedBeforeRollup deletes records the rollup has not written
// yet (as retention does while the rollup is down): the rollup must resume
// from what Kafka still has and count every deleted record as missing.
func TestRecordsDeletedBeforeRollup(t *testing.T) {
	ch, conn := startCH(t)
	brokers := startKafka(t, 2)
	g, m := newGen(5), newModel()
	o := Options{Brokers: brokers, Topic: testTopic, Group: testTopic, ClickHouseAddr: ch.Addr(), Database: testDB, Hierarchy: testHierarchy,
		Raw: true, MaxBatchEvents: 1000, Logger: quietLogger()}

	produce(t, brokers, g, m, 3000, 0)
	first := endOffsets(t, brokers)
	stop := runRollup(t, o)
	waitCaughtUp(t, conn, first, 60*time.Second)
	stop()

	// While the rollup is down, 3,000 more records arrive and Kafka deletes
	// the older half of them.
	produce(t, brokers, g, m, 3000, 0)
	second := endOffsets(t, brokers)
	to := kadm.Offsets{}
	var deleted int64
	for kp, end := range second {
		cut := first[kp] + (end-first[kp])/2
		to.AddOffset(testTopic, kp, cut, -1)
		deleted += cut - first[kp]
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	res, err := kadm.NewClient(cl).DeleteRecords(context.Background(), to)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
	if deleted == 0 {
		t.Fatal("nothing deleted")
	}

	stop = runRollup(t, o)
	waitCaughtUp(t, conn, second, 60*time.Second)
	st := stop()
	if int64(st.Missing) != deleted {
		t.Errorf("Missing = %d, want the %d deleted records", st.Missing, deleted)
	}
	if int64(st.Events) != 3000-deleted {
		t.Errorf("second run folded %d events, want %d", st.Events, 3000-deleted)
	}
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM "+testDB+".events_raw WHERE tenant_id != ''").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if int64(n) != 6000-deleted {
		t.Errorf("events_raw holds %d events, want %d", n, 6000-deleted)
	}
}
