package configlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// Projection follows a Log, keeps its State, and publishes a new
// catalog.Snapshot into a Store after every batch of records: the in-memory
// configuration of one node. Every node that runs a Projection over the same
// log converges to the same configuration.
//
// A batch that leaves the state invalid (possible only with several writers
// racing, or a partial batch from a broker) does not replace the published
// Snapshot: the node keeps serving the last valid one, Err reports the
// problems, and the next batch that makes the state valid again is published.
// A writer whose Update finds the state invalid because of its own records
// appends their previous values right away (ErrConflict), so a race between
// two nodes leaves the log invalid only until the loser has taken its change
// back (or forever, if it dies in between: a change fixing the problems
// repairs it).
//
// Writes go through Update (or Apply), which validates the result before
// appending and returns once this node has applied it (read-your-writes).
type Projection struct {
	log    Log
	store  *catalog.Store
	keys   *catalog.KeyRegistry
	logger *slog.Logger

	mu       sync.Mutex
	state    State
	skel     State             // the records of state that are not applications: tenants, services, plans
	validDoc *catalog.Document // while the state is invalid: the last valid document, the one published
	applied  Position
	err      error
	changed  chan struct{}          // closed and replaced whenever applied moves
	gateways gatewayIndex           // gateway configuration versions, from state
	sorted   map[string]*sortedApps // by service id, for AppPage
	rebuilds int                    // full rebuilds so far (the first batch, tenant and service records, invalid states)

	writeMu sync.Mutex // one Update at a time, so each bases on the last
}

// NewProjection returns a Projection of log publishing into store, with
// application keys from keys (one registry for the life of the process).
// Call Run to start following the log.
func NewProjection(log Log, store *catalog.Store, keys *catalog.KeyRegistry, logger *slog.Logger) *Projection {
	if logger == nil {
		logger = slog.Default()
	}
	if keys == nil {
		keys = catalog.NewKeyRegistry()
	}
	return &Projection{
		log:      log,
		store:    store,
		keys:     keys,
		logger:   logger,
		state:    State{},
		skel:     State{},
		changed:  make(chan struct{}),
		gateways: gatewayIndex{},
	}
}

// Run follows the log from where the projection stands until ctx is done or
// the log fails, applying every batch. It returns ctx.Err() on cancellation.
// Run it in its own goroutine; Sync tells when the initial replay is done.
func (p *Projection) Run(ctx context.Context) error {
	p.mu.Lock()
	from := p.applied
	p.mu.Unlock()
	return p.log.Tail(ctx, from, p.apply)
}

func (p *Projection) apply(batch []Entry) error {
	if len(batch) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// The state before the batch, kept only as the undo of its keys: if the
	// batch leaves the configuration invalid, the document published so far
	// is rebuilt from it.
	var undo map[string][]byte
	if p.err == nil && p.validDoc == nil {
		undo = make(map[string][]byte, len(batch))
		for _, e := range batch {
			if _, seen := undo[e.Key]; !seen {
				undo[e.Key] = p.state[e.Key] // nil: absent
			}
		}
	}
	for _, e := range batch {
		p.state.Apply(e.Record)
		p.gateways.apply(e.Record)
		if !strings.HasPrefix(e.Key, KindApp+"/") {
			p.skel.Apply(e.Record)
		}
	}
	if p.err == nil && p.stage(batch) {
		p.validDoc = nil
	} else {
		p.rebuild(batch[len(batch)-1].Pos, undo)
	}
	p.applied = batch[len(batch)-1].Pos
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

// stage applies a batch of plan and application records to the published
// catalog in place of a rebuild, at the cost of the records (see
// catalog.Stage). It reports false, having published nothing, when the
// batch holds a tenant or service record or a record the stage refuses (it
// would make the configuration invalid): the caller then rebuilds. Records
// that a rebuild would leave out (an unknown key, an entity of a service the
// catalog does not have) are left out here too, so that the result is
// always the one a rebuild gives.
func (p *Projection) stage(batch []Entry) bool {
	snap := p.store.Load()
	st := catalog.NewStage(snap, p.keys)
	for _, e := range batch {
		kind, ids, err := ParseKey(e.Key)
		if err != nil {
			continue
		}
		if kind == KindProxyConfig {
			continue // gateway versions: the gateway index, not the catalog
		}
		if kind != KindPlan && kind != KindApp {
			return false
		}
		if svc := snap.Services[ids[1]]; svc == nil || svc.Tenant == nil || svc.Tenant.ID != ids[0] {
			continue // no parent: a rebuild leaves it out
		}
		switch kind {
		case KindPlan:
			var spec catalog.PlanSpec
			if e.Tombstone() || !decodeValue(e.Value, &spec) {
				err = st.DeletePlan(ids[0], ids[1], ids[2])
			} else {
				spec.ID = ids[2]
				err = st.PutPlan(ids[0], ids[1], &spec)
			}
		case KindApp:
			var spec catalog.AppSpec
			if e.Tombstone() || !decodeValue(e.Value, &spec) {
				err = st.DeleteApp(ids[0], ids[1], ids[2])
			} else {
				spec.ID = ids[2]
				err = st.PutApp(ids[0], ids[1], &spec)
			}
		}
		if err != nil {
			return false
		}
	}
	st.Publish()
	return true
}

// rebuild builds the catalog from the whole state and publishes it if it
// is valid. undo, when not nil, holds the batch's keys as they were before
// it: the document to keep serving if the new state is invalid.
func (p *Projection) rebuild(pos Position, undo map[string][]byte) {
	p.rebuilds++
	p.sorted = nil
	doc, skipped := p.state.Document()
	if len(skipped) > 0 {
		// Keys name entities, never secrets: safe to log.
		p.logger.Warn("configlog: records without a parent or undecodable, ignored", "count", len(skipped), "first", skipped[0])
	}
	snap, err := catalog.Build(doc, p.keys)
	if err != nil {
		p.err = fmt.Errorf("configlog: configuration at position %d is invalid, still serving the previous one: %w", pos, err)
		var ve *catalog.ValidationError
		if errors.As(err, &ve) {
			p.logger.Error("configlog: invalid configuration in the log; keeping the previous one",
				"problems", len(ve.Problems), "first", ve.Problems[0].String())
		} else {
			p.logger.Error("configlog: cannot build configuration; keeping the previous one", "err", err)
		}
		if undo != nil {
			prev := maps.Clone(p.state)
			for k, v := range undo {
				if v == nil {
					delete(prev, k)
				} else {
					prev[k] = v
				}
			}
			p.validDoc, _ = prev.Document()
		}
		return
	}
	p.err = nil
	p.validDoc = nil
	p.store.Swap(snap)
}

// document assembles the document of the current state (valid or not);
// p.mu must be held. It is not kept: a node holds the configuration once,
// in its state, and once compiled, in its catalog.
func (p *Projection) document() *catalog.Document {
	doc, _ := p.state.Document()
	return doc
}

// Applied returns the log position up to which records are applied.
func (p *Projection) Applied() Position {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.applied
}

// Err returns why the current state of the log is not published (nil when
// the published Snapshot is the log's current state).
func (p *Projection) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Document returns the last valid document, the one the published Snapshot
// holds. It is shared: callers must not modify it (Clone it first). It
// costs a walk of the whole configuration when the configuration changed
// since the last call: readers of one entity use Tenant, Entity and Page.
func (p *Projection) Document() *catalog.Document {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.validDoc != nil {
		return p.validDoc
	}
	return p.document()
}

// Store returns the Store the projection publishes into.
func (p *Projection) Store() *catalog.Store { return p.store }

// WaitFor blocks until records up to pos are applied, or ctx is done.
func (p *Projection) WaitFor(ctx context.Context, pos Position) error {
	for {
		p.mu.Lock()
		applied, ch := p.applied, p.changed
		p.mu.Unlock()
		if applied >= pos {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("configlog: waiting for position %d (applied %d): %w", pos, applied, ctx.Err())
		case <-ch:
		}
	}
}

// Sync blocks until every record in the log when it is called is applied:
// after it returns the node has caught up (readiness), or ctx is done.
func (p *Projection) Sync(ctx context.Context) error {
	end, err := p.log.End(ctx)
	if err != nil {
		return fmt.Errorf("configlog: sync: %w", err)
	}
	return p.WaitFor(ctx, end)
}

// Update changes the configuration: change edits a private copy of the
// current state's document; if change returns an error, nothing is written
// and that error is returned as is. Otherwise the result is validated (a
// *catalog.ValidationError if invalid, or if a service would need more
// metric ids than this process has left for it: catalog.MaxMetricIDs), the records that turn the current
// state into it are appended to the log, and Update returns once this
// projection has applied them (Run must be running). Updates of one
// Projection are serialized; against another writer's change appended at
// the same time, see ErrConflict.
//
// A service whose gateway configuration (with defaults) differs from its
// latest staging version gets a new staging version, and a service without
// a production version gets version 1 (see GatewayVersion).
func (p *Projection) Update(ctx context.Context, change func(doc *catalog.Document) error) error {
	return p.update(ctx, change, nil)
}

// update is Update; for the tenants setProduction reports (a file's: a
// configuration file sets both environments), a changed gateway
// configuration is a new production version too.
func (p *Projection) update(ctx context.Context, change func(doc *catalog.Document) error, setProduction func(tenant string) bool) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	// The diff must be against the very state the change started from:
	// diffing against a newer state (another writer's records applied in
	// the meantime) would delete what this change never saw.
	p.mu.Lock()
	desired := p.document()
	base := maps.Clone(p.state)
	p.mu.Unlock()
	if err := change(desired); err != nil {
		return err
	}
	if err := desired.Validate(); err != nil {
		return err
	}
	// A service out of metric ids could not be built: refuse it here, before
	// the log holds it, not on apply, where the whole node would keep its
	// previous configuration.
	if err := p.keys.Reserve(desired); err != nil {
		return err
	}
	recs := Diff(base, desired)
	gw, err := gatewayRecords(baseGateways(base), desired, setProduction, time.Now().UTC().Truncate(time.Second))
	if err != nil {
		return err
	}
	recs = append(recs, gw...)
	if len(recs) == 0 {
		return nil
	}
	pos, err := p.log.Append(ctx, recs)
	if err != nil {
		return fmt.Errorf("configlog: append %d records: %w", len(recs), err)
	}
	if err := p.WaitFor(ctx, pos); err != nil {
		return err
	}
	if err := p.Err(); err != nil {
		return p.withdraw(ctx, base, recs, err)
	}
	return nil
}

// ErrConflict is returned by Update when its change, valid against the
// state it started from, made the log's configuration invalid together
// with another writer's change appended meanwhile (two nodes letting two
// tenants take the same service id). Update has then taken its records back
// and nothing of the change remains; the error also wraps the problems.
var ErrConflict = errors.New("configlog: the change conflicts with a concurrent change")

// withdraw takes back recs, the records an Update appended over base, when
// the configuration is invalid with them and valid without them: left in
// the log, they would keep it invalid and every later change refused.
// Records another writer has overwritten since are left alone. If the
// configuration is invalid even without recs, it returns invalid as is.
// When both writers of a collision withdraw, neither change remains, and
// each caller may retry.
func (p *Projection) withdraw(ctx context.Context, base State, recs []Record, invalid error) error {
	p.mu.Lock()
	without := maps.Clone(p.state)
	p.mu.Unlock()
	var back []Record
	for _, r := range recs {
		cur, ok := without[r.Key]
		if r.Tombstone() && ok || !r.Tombstone() && (!ok || !bytes.Equal(cur, r.Value)) {
			continue // overwritten since
		}
		if v, ok := base[r.Key]; ok {
			without[r.Key] = v
			back = append(back, Record{Key: r.Key, Value: v})
		} else {
			delete(without, r.Key)
			back = append(back, Record{Key: r.Key})
		}
	}
	doc, _ := without.Document()
	if len(back) == 0 || doc.Validate() != nil {
		return invalid
	}
	sortRecords(back)
	pos, err := p.log.Append(ctx, back)
	if err != nil {
		return fmt.Errorf("configlog: take back %d records of a conflicting change: %w", len(back), err)
	}
	if err := p.WaitFor(ctx, pos); err != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrConflict, invalid)
}

// Apply makes the log hold desired for every tenant desired declares (see
// Reconcile), leaving other tenants alone: how a configuration file is
// applied at start-up. The merged result is validated first; desired is
// not modified.
//
// Apply is built for large files: it never copies desired (the merged
// configuration it validates shares desired's tenants and holds the other
// tenants without their applications, which no other tenant's rules
// read), it encodes and compares one entity at a time, and it appends the
// records in chunks of at most ChunkBytes, so that no log sees a
// write of the whole configuration at once. A change of many chunks is not
// all-or-nothing: after a crash half way the log holds part of it, and
// applying the file again completes it.
func (p *Projection) Apply(ctx context.Context, desired *catalog.Document) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.mu.Lock()
	current, _ := p.skel.Document()
	p.mu.Unlock()
	merged := &catalog.Document{Tenants: make([]catalog.TenantSpec, 0, len(current.Tenants)+len(desired.Tenants))}
	declared := make(map[string]*catalog.TenantSpec, len(desired.Tenants))
	for i := range desired.Tenants {
		declared[desired.Tenants[i].ID] = &desired.Tenants[i]
	}
	placed := map[string]bool{}
	for _, t := range current.Tenants {
		if d := declared[t.ID]; d != nil && !placed[t.ID] {
			merged.Tenants = append(merged.Tenants, *d)
			placed[t.ID] = true
		} else if d == nil {
			merged.Tenants = append(merged.Tenants, t)
		}
	}
	for i := range desired.Tenants {
		if t := &desired.Tenants[i]; !placed[t.ID] {
			merged.Tenants = append(merged.Tenants, *t)
			placed[t.ID] = true
		}
	}
	if err := merged.Validate(); err != nil {
		return err
	}
	if err := p.keys.Reserve(merged); err != nil {
		return err
	}
	recs := p.reconcile(desired)
	// A configuration file sets both environments of its services' gateway
	// configuration (see update).
	p.mu.Lock()
	gw, err := gatewayRecords(p.gateways, desired, func(tenant string) bool { return declared[tenant] != nil }, time.Now().UTC().Truncate(time.Second))
	p.mu.Unlock()
	if err != nil {
		return err
	}
	recs = append(recs, gw...)
	if len(recs) == 0 {
		return nil
	}
	var last Position
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && (n == 0 || size+len(recs[n].Key)+len(recs[n].Value) <= ChunkBytes) {
			size += len(recs[n].Key) + len(recs[n].Value)
			n++
		}
		pos, err := p.log.Append(ctx, recs[:n])
		if err != nil {
			return fmt.Errorf("configlog: append %d records: %w", n, err)
		}
		clear(recs[:n]) // written: let the values go
		recs, last = recs[n:], pos
	}
	if err := p.WaitFor(ctx, last); err != nil {
		return err
	}
	return p.Err()
}

// ChunkBytes bounds the keys and values of one Append of Apply: 4 MiB, well
// within a Kafka batch (the config topic's producer allows 16 MiB) and a
// file log frame.
const ChunkBytes = 4 << 20

// reconcile returns the records that make the state hold desired's tenants
// as desired declares them: upserts of what differs, parents first, then
// tombstones of what those tenants no longer have, children first.
func (p *Projection) reconcile(desired *catalog.Document) []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	var recs, tombs []Record
	tenants := map[string]bool{}
	known := false // the state has records of a declared tenant
	for i := range desired.Tenants {
		tenants[desired.Tenants[i].ID] = true
		if _, ok := p.skel[TenantKey(desired.Tenants[i].ID)]; ok {
			known = true
		}
	}
	var seen map[string]bool
	if known {
		seen = map[string]bool{}
	}
	for i := range desired.Tenants {
		eachEntity(&desired.Tenants[i], func(k string, v []byte) {
			if cur, ok := p.state[k]; !ok || !bytes.Equal(cur, v) {
				recs = append(recs, Record{Key: k, Value: v})
			}
			if seen != nil {
				seen[k] = true
			}
		})
	}
	if known {
		for k := range p.state {
			if seen[k] {
				continue
			}
			kind, ids, err := ParseKey(k)
			if err != nil || !tenants[ids[0]] {
				continue
			}
			if kind == KindProxyConfig && seen[ServiceKey(ids[0], ids[1])] {
				// Gateway versions are the history: they stay while
				// their service does.
				continue
			}
			tombs = append(tombs, Record{Key: k})
		}
	}
	return append(byKind(recs, false), byKind(tombs, true)...)
}

// byKind orders records by kind, parents first (children first for
// tombstones), keeping their order within a kind: the order a log needs
// (no record before its parent), in one pass, where sorting a million
// records by key costs seconds.
func byKind(recs []Record, childrenFirst bool) []Record {
	var buckets [4][]Record
	for _, r := range recs {
		i := rankOf(r.Key)
		if i > 3 {
			i = 3
		}
		if childrenFirst {
			i = 3 - i
		}
		buckets[i] = append(buckets[i], r)
	}
	out := recs[:0]
	for _, b := range buckets {
		out = append(out, b...)
	}
	return out
}

// Replace makes the log hold exactly desired: tenants desired does not
// declare are deleted. For a file that is the whole truth (`--prune`);
// Apply is the usual way to apply a file.
func (p *Projection) Replace(ctx context.Context, desired *catalog.Document) error {
	return p.update(ctx, func(doc *catalog.Document) error {
		*doc = *desired.Clone()
		return nil
	}, func(string) bool { return true })
}
