package alerts

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
	"github.com/sluice-dev/sluice/internal/kafkatest"
)

// TestSinkKeepsFirstCopy: copies of one alert (as several API nodes write
// them) are delivered and stored once, an undecodable record is skipped, and
// a second consumer group reading the same records (a rollup restarted
// without its offsets) stores and delivers nothing again.
func TestSinkKeepsFirstCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ClickHouse and a broker")
	}
	b := kafkatest.Start(t)
	topic := b.Topic(t, Topic, 2)
	_, conn := chtest.Start(t)
	if err := chschema.Migrate(context.Background(), conn, "sluice"); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	calls := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if !Verify([]byte("whsec-0123456789abcdef"), body, r.Header.Get(SignatureHeader)) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		calls[r.Header.Get(IDHeader)]++
	}))
	defer hook.Close()

	svc := testService(t)
	doc := &catalog.Document{Tenants: []catalog.TenantSpec{{ID: "acme", AdminToken: "adm-alerts-test-0001",
		WebhookURL: hook.URL, WebhookSecret: "whsec-0123456789abcdef"}}}
	snap, err := catalog.Build(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := catalog.NewStore(snap)

	start := time.Now().UTC().Truncate(time.Minute).Unix()
	lims := svc.App("app1").Plan().Limits
	var recs []*kgo.Record
	add := func(pct uint16, value int64, node string) string {
		a := alertOf(&pending{svc: svc, app: svc.App("app1"), lim: lims[0], start: start, value: value, pct: pct, at: time.Now().UnixMilli()}, node)
		v, _ := json.Marshal(&a)
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(a.ID), Value: v})
		return a.ID
	}
	a50 := add(50, 5, "n1")
	add(50, 6, "n2")
	add(50, 5, "n3")
	a80 := add(80, 8, "n1")
	recs = append(recs, &kgo.Record{Topic: topic, Key: []byte("junk"), Value: []byte("{not json")})
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	run := func(group string, until func(s *Sink) bool) *Sink {
		t.Helper()
		s, err := NewSink(SinkOptions{Brokers: b.Addrs, Topic: topic, Group: group, Conn: conn, Database: "sluice", Catalog: store})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		deadline := time.Now().Add(30 * time.Second)
		for !until(s) {
			if time.Now().After(deadline) {
				cancel()
				<-done
				t.Fatalf("sink: stored %d duplicates %d invalid %d", s.stored.Load(), s.duplicates.Load(), s.invalid.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		<-done
		return s
	}
	s1 := run(kafkatest.UniqueName("g1"), func(s *Sink) bool { return s.stored.Load()+s.duplicates.Load()+s.invalid.Load() == 5 })
	if s1.stored.Load() != 2 || s1.duplicates.Load() != 2 || s1.invalid.Load() != 1 || s1.delivered.Load() != 2 {
		t.Fatalf("first sink: stored %d duplicates %d invalid %d delivered %d; want 2, 2, 1, 2",
			s1.stored.Load(), s1.duplicates.Load(), s1.invalid.Load(), s1.delivered.Load())
	}
	s2 := run(kafkatest.UniqueName("g2"), func(s *Sink) bool { return s.duplicates.Load()+s.invalid.Load() == 5 })
	if s2.stored.Load() != 0 || s2.delivered.Load() != 0 {
		t.Fatalf("second sink stored %d, delivered %d: want nothing again", s2.stored.Load(), s2.delivered.Load())
	}
	mu.Lock()
	if calls[a50] != 1 || calls[a80] != 1 || len(calls) != 2 {
		t.Errorf("webhook calls %v, want one per alert", calls)
	}
	mu.Unlock()
	known, err := chschema.KnownAlerts(context.Background(), conn, "sluice", "acme", []string{a50, a80, "ffffffffffffffffffffffffffffffff"})
	if err != nil || len(known) != 2 || !known[a50] || !known[a80] {
		t.Fatalf("KnownAlerts = %v, %v", known, err)
	}
	rows, err := conn.Query(context.Background(), "SELECT count() FROM sluice.alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		rows.Scan(&n)
	}
	if n != 2 {
		t.Fatalf("alerts table holds %d rows, want 2", n)
	}
}
