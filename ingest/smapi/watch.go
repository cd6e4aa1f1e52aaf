package smapi

import (
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/limiter"
)

// UsageWatcher sees the counters that a call moved, once the call's usage is
// counted and its event accepted: the utilization alerts detector
// (ingest/alerts). Both methods are on the hot path: they must not block or
// allocate, and must not keep the slices they are given.
type UsageWatcher interface {
	// ObserveReports gets an admitted authrep's reports: each limit's value
	// before (Report.Before) and after (Report.Current) the call.
	ObserveReports(svc *catalog.Service, app *catalog.App, reports []limiter.Report)
	// ObserveChanges gets the counters a reported transaction moved.
	ObserveChanges(svc *catalog.Service, app *catalog.App, limits []limiter.Limit, changes []limiter.Change)
}

// watchAuthrep hands an admitted authrep's reports to the watcher.
func (s *Server) watchAuthrep(st *reqState, svc *catalog.Service, app *catalog.App) {
	if s.watch != nil {
		s.watch.ObserveReports(svc, app, st.dec.Reports)
	}
}

// record counts one reported transaction in the limiter, keeping the
// counters it moved in st.changes for watchReport when there is a watcher.
func (s *Server) record(st *reqState, app *catalog.App, limits []limiter.Limit, svc *catalog.Service, usage []limiter.Usage, at time.Time) error {
	if s.watch == nil {
		return s.lim.Record(app.Key, limits, svc.Parents, usage, st.opts.flatUsage, at)
	}
	st.changes = st.changes[:0]
	return s.lim.RecordChanges(app.Key, limits, svc.Parents, usage, st.opts.flatUsage, at, &st.changes)
}

// watchReport hands the counters record moved to the watcher.
func (s *Server) watchReport(st *reqState, svc *catalog.Service, app *catalog.App, limits []limiter.Limit) {
	if s.watch != nil && len(st.changes) > 0 {
		s.watch.ObserveChanges(svc, app, limits, st.changes)
	}
}
