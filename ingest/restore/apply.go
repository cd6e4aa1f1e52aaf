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

	dec    event.Decoder
	ev     event.Event
	limits []limiter.Limit
	usage  []limiter.Usage
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
	if app == nil {
		return false, nil
	}
	svc := app.Service
	a.usage = a.usage[:0]
	for _, u := range ev.Usage {
		if m, ok := svc.MetricIndex[u.Metric]; ok && len(a.usage) < limiter.MaxUsage {
			a.usage = append(a.usage, limiter.Usage{Metric: m, Value: u.Value, Set: u.Set})
		}
	}
	limits := app.Plan.Limits
	if keep != nil {
		a.limits = a.limits[:0]
		for _, l := range app.Plan.Limits {
			if keep(l) {
				a.limits = append(a.limits, l)
			}
		}
		limits = a.limits
	}
	if len(a.usage) == 0 || len(limits) == 0 {
		return false, nil
	}
	if err := a.Limiter.Record(app.Key, limits, svc.Parents, a.usage, false, time.UnixMilli(ev.TS)); err != nil {
		return true, err
	}
	return true, nil
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
	if a == nil || a.Plan == nil || a.Service == nil {
		return nil
	}
	return a
}
