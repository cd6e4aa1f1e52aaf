package configlog

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// startProjection runs a projection of l until the test ends.
func startProjection(t *testing.T, l Log, keys *catalog.KeyRegistry) *Projection {
	t.Helper()
	p := NewProjection(l, &catalog.Store{}, keys, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := p.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	return p
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestProjectionApplyAndReadYourWrites(t *testing.T) {
	l := openT(t, t.TempDir())
	defer l.Close()
	p := startProjection(t, l, nil)
	if s := p.Store().Load(); len(s.Tenants) != 0 {
		t.Fatal("empty log, non-empty snapshot")
	}
	doc := fullDoc(t)
	if err := p.Apply(ctx5(t), doc); err != nil {
		t.Fatal(err)
	}
	// Applied and published by the time Apply returns.
	if !reflect.DeepEqual(p.Document(), sorted(doc)) {
		t.Error("document after apply")
	}
	snap := p.Store().Load()
	if snap.Services["globex-1"] == nil || snap.AdminTokens["adm-acme"] == nil {
		t.Fatal("snapshot after apply")
	}
	key := snap.Services["2555417777820"].App("app1").Key

	err := p.Update(ctx5(t), func(d *catalog.Document) error {
		d.Tenant("acme").Service("2555417777820").App("app1").State = "suspended"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	app := p.Store().Load().Services["2555417777820"].App("app1")
	if app.State != catalog.Suspended || app.Key != key {
		t.Errorf("after update: state %v key %v (was %v)", app.State, app.Key, key)
	}

	// Invalid changes are refused before anything is written.
	end, _ := l.End(context.Background())
	err = p.Update(ctx5(t), func(d *catalog.Document) error {
		d.Tenant("acme").Service("2555417777820").Plans[0].Limits[0].Period = "fortnight"
		return nil
	})
	var ve *catalog.ValidationError
	if !errors.As(err, &ve) || ve.Problems[0].Path != "tenants[0].services[0].plans[0].limits[0].period" {
		t.Errorf("invalid update: %v", err)
	}
	mine := errors.New("mine")
	if err := p.Update(ctx5(t), func(*catalog.Document) error { return mine }); err != mine {
		t.Errorf("change error: %v", err)
	}
	if after, _ := l.End(context.Background()); after != end {
		t.Error("refused updates wrote to the log")
	}
	// A change that changes nothing appends nothing.
	if err := p.Apply(ctx5(t), &catalog.Document{Tenants: []catalog.TenantSpec{*p.Document().Tenant("globex")}}); err != nil {
		t.Fatal(err)
	}
	if after, _ := l.End(context.Background()); after != end {
		t.Error("a no-op apply wrote to the log")
	}
}

// TestProjectionsConverge: two projections over the same log, both writing,
// end with the same configuration; so does a third started afterwards over
// the reopened file (a restart).
func TestProjectionsConverge(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir)
	p1 := startProjection(t, l, nil)
	p2 := startProjection(t, l, nil)
	if err := p1.Apply(ctx5(t), fullDoc(t)); err != nil {
		t.Fatal(err)
	}
	demo, _ := catalog.DemoDocument(catalog.DemoCredentials{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := p2.Apply(ctx5(t), demo); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 5 {
			err := p1.Update(ctx5(t), func(d *catalog.Document) error {
				s := d.Tenant("globex").Service("globex-1")
				s.Plans[0].Limits[0].Max = int64(1000 + i)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	for _, p := range []*Projection{p1, p2} {
		if err := p.Sync(ctx5(t)); err != nil {
			t.Fatal(err)
		}
	}
	d1, d2 := p1.Document(), p2.Document()
	if !reflect.DeepEqual(d1, d2) {
		t.Fatalf("projections diverged:\n%+v\n%+v", d1, d2)
	}
	if d1.Tenant("demo") == nil || d1.Tenant("globex").Service("globex-1").Plans[0].Limits[0].Max != 1004 {
		t.Errorf("converged document misses writes: %+v", d1)
	}
	// Restart: a new process reading the file gets the same configuration.
	l.Close()
	l2 := openT(t, dir)
	defer l2.Close()
	p3 := startProjection(t, l2, nil)
	if !reflect.DeepEqual(p3.Document(), d1) {
		t.Error("configuration did not survive a restart")
	}
	if p3.Store().Load().Services[catalog.DemoServiceID] == nil {
		t.Error("snapshot after restart")
	}
}

// TestProjectionKeepsLastValid: records that leave the log's state invalid
// (a racing writer) do not replace the published snapshot.
func TestProjectionKeepsLastValid(t *testing.T) {
	l := openT(t, t.TempDir())
	defer l.Close()
	p := startProjection(t, l, nil)
	if err := p.Apply(ctx5(t), fullDoc(t)); err != nil {
		t.Fatal(err)
	}
	good := p.Store().Load()
	// A plan that an app uses disappears, behind the validator's back.
	pos, err := l.Append(context.Background(), []Record{{Key: PlanKey("globex", "globex-1", "gold")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx5(t), pos); err != nil {
		t.Fatal(err)
	}
	if p.Err() == nil || p.Store().Load() != good {
		t.Fatalf("invalid state published (err %v)", p.Err())
	}
	// Updates still work from the log's state and repair it.
	err = p.Update(ctx5(t), func(d *catalog.Document) error {
		s := d.Tenant("globex").Service("globex-1")
		s.Plans = append(s.Plans, catalog.PlanSpec{ID: "gold"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Err() != nil || p.Store().Load() == good || len(p.Store().Load().Services["globex-1"].Plan("gold").Limits) != 0 {
		t.Errorf("repair not published: %v", p.Err())
	}
}

func TestWaitForTimesOut(t *testing.T) {
	l := openT(t, t.TempDir())
	defer l.Close()
	p := NewProjection(l, &catalog.Store{}, nil, quiet) // not running
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.WaitFor(ctx, 1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor = %v", err)
	}
}

func TestProjectionReplacePrunes(t *testing.T) {
	l := openT(t, t.TempDir())
	defer l.Close()
	p := startProjection(t, l, nil)
	if err := p.Apply(ctx5(t), fullDoc(t)); err != nil {
		t.Fatal(err)
	}
	only := &catalog.Document{Tenants: []catalog.TenantSpec{fullDoc(t).Tenants[1]}}
	if err := p.Replace(ctx5(t), only); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Document(), only) || p.Store().Load().Tenants["acme"] != nil {
		t.Errorf("after replace: %+v", p.Document())
	}
	st := StateOf(only)
	if got := Diff(st, p.Document()); len(got) != 0 {
		t.Errorf("log state differs from the replacement: %q", keysOf(got))
	}
}

// TestUpdateRefusesServiceOutOfMetricIDs: a change that would give a service
// more metric ids than the process has left for it is refused before it
// reaches the log, so the node keeps building its configuration and other
// changes, of that tenant or another, still go through.
func TestUpdateRefusesServiceOutOfMetricIDs(t *testing.T) {
	l := NewMemLog()
	keys := catalog.NewKeyRegistry()
	p := startProjection(t, l, keys)
	if err := p.Apply(ctx5(t), fullDoc(t)); err != nil {
		t.Fatal(err)
	}
	const sid = "2555417777820" // acme's service with hits, search, search.deep
	// Use up the service's ids with names it had at some point.
	for used := 3; used < catalog.MaxMetricIDs; {
		n := min(catalog.MaxMetrics, catalog.MaxMetricIDs-used)
		ms := make([]catalog.MetricSpec, n)
		for i := range ms {
			ms[i].Name = fmt.Sprint("old", used+i)
		}
		d := &catalog.Document{Tenants: []catalog.TenantSpec{{ID: "acme", Services: []catalog.ServiceSpec{{ID: sid, Metrics: ms}}}}}
		if err := keys.Reserve(d); err != nil {
			t.Fatal(err)
		}
		used += n
	}
	end, err := l.End(ctx5(t))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Update(ctx5(t), func(d *catalog.Document) error {
		s := d.Tenant("acme").Service(sid)
		s.Metrics = append(s.Metrics, catalog.MetricSpec{Name: "fresh"})
		return nil
	})
	var ve *catalog.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || !strings.HasSuffix(ve.Problems[0].Path, ".metrics") {
		t.Fatalf("update = %v, want a *catalog.ValidationError on the service's metrics", err)
	}
	if now, _ := l.End(ctx5(t)); now != end {
		t.Errorf("refused update appended records: log end %d -> %d", end, now)
	}
	// Names the service had are still fine, and so is everyone else.
	for _, change := range []func(d *catalog.Document){
		func(d *catalog.Document) {
			d.Tenant("acme").Service(sid).Metrics = append(d.Tenant("acme").Service(sid).Metrics, catalog.MetricSpec{Name: "old42"})
		},
		func(d *catalog.Document) {
			d.Tenant("globex").Service("globex-1").Metrics = append(d.Tenant("globex").Service("globex-1").Metrics, catalog.MetricSpec{Name: "fresh"})
		},
	} {
		if err := p.Update(ctx5(t), func(d *catalog.Document) error { change(d); return nil }); err != nil {
			t.Fatalf("update after the refusal: %v", err)
		}
	}
	snap := p.Store().Load()
	if _, ok := snap.Services[sid].MetricIndex["old42"]; !ok || p.Err() != nil {
		t.Errorf("acme's change not published (err %v)", p.Err())
	}
	if _, ok := snap.Services["globex-1"].MetricIndex["fresh"]; !ok {
		t.Error("globex's change not published")
	}
}

// TestUpdateTakesBackAConflictingChange: two writers (nodes) over one log,
// each change valid against the state it started from, together invalid
// (two tenants take service id "x"). The writer that finds the log invalid
// because of its own records takes them back and returns ErrConflict; the
// log's configuration is valid again on every node, with the other
// writer's change in it.
func TestUpdateTakesBackAConflictingChange(t *testing.T) {
	l := openT(t, t.TempDir())
	defer l.Close()
	p1 := startProjection(t, l, nil)
	p2 := startProjection(t, l, nil)
	if err := p1.Apply(ctx5(t), fullDoc(t)); err != nil {
		t.Fatal(err)
	}
	if err := p2.Sync(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	take := func(tenant string) func(d *catalog.Document) error {
		return func(d *catalog.Document) error {
			tn := d.Tenant(tenant)
			tn.Services = append(tn.Services, catalog.ServiceSpec{ID: "x", Metrics: []catalog.MetricSpec{{Name: "hits"}}})
			return nil
		}
	}
	err := p2.Update(ctx5(t), func(d *catalog.Document) error {
		// Meanwhile, on the other node, acme takes the same id.
		if err := p1.Update(ctx5(t), take("acme")); err != nil {
			t.Fatalf("the first writer: %v", err)
		}
		return take("globex")(d)
	})
	var ve *catalog.ValidationError
	if !errors.Is(err, ErrConflict) || !errors.As(err, &ve) {
		t.Fatalf("the second writer: %v, want ErrConflict wrapping the problems", err)
	}
	for i, p := range []*Projection{p1, p2} {
		if err := p.Sync(ctx5(t)); err != nil {
			t.Fatal(err)
		}
		if err := p.Err(); err != nil {
			t.Errorf("node %d: configuration still invalid: %v", i+1, err)
		}
		if s := p.Store().Load().Services["x"]; s == nil || s.Tenant.ID != "acme" {
			t.Errorf("node %d: service x is not acme's", i+1)
		}
		if p.Document().Tenant("globex").Service("x") != nil {
			t.Errorf("node %d: the withdrawn change is in the document", i+1)
		}
	}
}

// TestUpdateKeepsAChangeNotAtFault: when the log turns invalid because of
// another writer's records alone, an Update's own valid records stay and
// it reports the problems, not ErrConflict.
func TestUpdateKeepsAChangeNotAtFault(t *testing.T) {
	l := openT(t, t.TempDir())
	defer l.Close()
	p := startProjection(t, l, nil)
	if err := p.Apply(ctx5(t), fullDoc(t)); err != nil {
		t.Fatal(err)
	}
	err := p.Update(ctx5(t), func(d *catalog.Document) error {
		// Another writer deletes a plan an application uses.
		if _, err := l.Append(context.Background(), []Record{{Key: PlanKey("globex", "globex-1", "gold")}}); err != nil {
			t.Fatal(err)
		}
		d.Tenant("acme").Service("2555417777820").State = "suspended"
		return nil
	})
	if err == nil || errors.Is(err, ErrConflict) {
		t.Fatalf("Update = %v, want the problems of the other writer's records", err)
	}
	p.mu.Lock()
	got := p.document().Tenant("acme").Service("2555417777820").State
	p.mu.Unlock()
	if got != "suspended" {
		t.Errorf("the change not at fault was taken back: state %q", got)
	}
}
