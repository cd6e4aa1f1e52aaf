package restore

import (
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

// Applier turns usage events read from the log into limiter records: the one
// translation from an event (tenant, service, application and metric names)
// to a limiter call (keys and metric ids), shared by the restore replay and
// the cluster projection. It keeps its scratch memory between calls, so a
// stream of events from known applications does not allocate. An Applier is
// not safe for concurrent use.
type Applier struct {
	// Limiter receives the usage. Required.
	Limiter *limiter.Limiter
	// Peer marks an Applier of another region's usage: it counts only
	// toward the plan's limits with scope global (catalog.Plan.Global).
	Peer bool

	// Watcher, if set, sees the counters each applied event moved: the
	// cluster projection and the restore replay hand usage read from the
	// log to the utilization alerts detector through it.
	Watcher Watcher

	changes []limiter.Change
	dec     event.Decoder
	ev      event.Event
	app     *catalog.App
	limits  []limiter.Limit
	usage   []limiter.Usage
}

// Decode decodes one record value into the Applier's event, valid until the
// next call.
func (a *Applier) Decode(value []byte) (*event.Event, error) {
	if a.dec.MaxStrings == 0 {
		// Room for the ids of a million applications, so that a stream over
		// all of them does not clear the intern table and allocate again.
		a.dec.MaxStrings = 1 << 21
	}
	if err := a.dec.Decode(value, &a.ev); err != nil {
		return nil, err
	}
	return &a.ev, nil
}

// Apply records ev's usage in the limits of its application's current plan
// that keep accepts (nil keeps all), at the event's own time. It reports
// whether anything was applied: denials, unknown applications, unknown
// metrics and events no kept limit counts are skipped. An error is the
// limiter's refusal (usage that is negative or would pass the largest
// int64): nothing of the event is counted.
func (a *Applier) Apply(snap *catalog.Snapshot, ev *event.Event, keep func(limiter.Limit) bool) (bool, error) {
	if ev.Kind != event.KindAuthrep && ev.Kind != event.KindReport {
		return false, nil
	}
	app := lookup(snap, ev.TenantID, ev.ServiceID, ev.AppID)
	a.app = app
	if app == nil {
		return false, nil
	}
	svc := app.Service
	a.usage = a.usage[:0]
	flat := false
	for _, u := range ev.Usage {
		// An event is flat as a whole (3scale's flat_usage applies to a
		// call), so any flat entry makes the record flat.
		flat = flat || u.Flat
		if m, ok := svc.MetricIndex[u.Metric]; ok && len(a.usage) < limiter.MaxUsage {
			a.usage = append(a.usage, limiter.Usage{Metric: m, Value: u.Value, Set: u.Set})
		}
	}
	plan := app.Plan()
	limits := plan.Limits
	if a.Peer {
		limits = plan.Global
	}
	if keep != nil {
		a.limits = a.limits[:0]
		for _, l := range limits {
			if keep(l) {
				a.limits = append(a.limits, l)
			}
		}
		limits = a.limits
	}
	if len(a.usage) == 0 || len(limits) == 0 {
		return false, nil
	}
	if a.Watcher == nil {
		if err := a.Limiter.Record(app.Key, limits, svc.Parents, a.usage, flat, time.UnixMilli(ev.TS)); err != nil {
			return true, err
		}
		return true, nil
	}
	a.changes = a.changes[:0]
	if err := a.Limiter.RecordChanges(app.Key, limits, svc.Parents, a.usage, flat, time.UnixMilli(ev.TS), &a.changes); err != nil {
		return true, err
	}
	if len(a.changes) > 0 {
		a.Watcher.ObserveChanges(svc, app, limits, a.changes)
	}
	return true, nil
}

// App is the application of the event Apply last looked at, nil if it
// was unknown (or had no plan).
func (a *Applier) App() *catalog.App { return a.app }

// Watcher sees the counters an applied event moved. It must not keep
// changes.
type Watcher interface {
	ObserveChanges(svc *catalog.Service, app *catalog.App, limits []limiter.Limit, changes []limiter.Change)
}

// lookup finds an application with a plan, or nil.
func lookup(snap *catalog.Snapshot, tenant, service, app string) *catalog.App {
	if snap == nil {
		return nil
	}
	svc := snap.Services[service]
	if svc == nil || svc.Tenant == nil || svc.Tenant.ID != tenant {
		return nil
	}
	a := svc.App(app)
	if a == nil || a.Plan() == nil || a.Service == nil {
		return nil
	}
	return a
}
