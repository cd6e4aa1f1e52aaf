package query

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/configlog"
)

// PathChanges is the path of the configuration-changes endpoint.
const PathChanges = "/api/v1/changes"

// MaxChangesPerTenant bounds the changes a ChangeFeed keeps per tenant: the
// oldest go first. One tenant's burst of edits cannot push out another's.
const MaxChangesPerTenant = 1000

// maxChangeText bounds a change's text (a plan's new limits are listed).
const maxChangeText = 512

// Kinds of change.
const (
	ChangeAppCreated   = "app_created"
	ChangeAppDeleted   = "app_deleted"
	ChangePlanChanged  = "plan_changed"
	ChangeAppSuspended = "app_suspended"
	ChangeAppResumed   = "app_resumed"
	ChangeLimitsEdited = "limits_edited"
)

// Change is one configuration change that matters next to usage: an
// application's plan or state, or a plan's limits.
type Change struct {
	Time      time.Time `json:"-"`
	T         string    `json:"time"`
	Kind      string    `json:"kind"`
	ServiceID string    `json:"service_id"`
	AppID     string    `json:"app_id,omitempty"`
	PlanID    string    `json:"plan_id,omitempty"`
	Text      string    `json:"text"`
	tenant    string
}

// ChangeFeed derives Changes from the configuration change log: it tails the
// log from its start, keeps the little it needs of every application and
// plan (an application's plan and state, a hash of a plan's limits) and
// compares each record with the previous one of its key.
//
// The log is the history, with two limits that follow from it. A compacted
// log (the Kafka topic) keeps only the latest record of a key, so changes
// older than the last compaction of their key are gone. And a change is
// dated by its record's time where the log keeps one (Kafka); the file log
// keeps none, so records that were already in it when the feed started are
// taken as the starting state, not as changes, and later ones are dated when
// the feed reads them (within milliseconds of the append).
//
// Memory: one small entry per application and plan (an application's plan id
// and state, a plan's 8-byte hash), less than the configuration the node's
// projection already holds, plus at most MaxChangesPerTenant changes per
// tenant. Safe for concurrent use.
type ChangeFeed struct {
	now func() time.Time

	mu      sync.Mutex
	apps    map[string]appState // by record key
	plans   map[string]uint64   // by record key: hash of the limits
	tenants map[string][]Change // oldest first; the latest MaxChangesPerTenant count (up to twice that are held)

	caughtUp     chan struct{}
	caughtUpOnce sync.Once
}

type appState struct{ plan, state string }

// NewChangeFeed returns an empty feed; Run fills it.
func NewChangeFeed() *ChangeFeed {
	return &ChangeFeed{now: time.Now, apps: map[string]appState{}, plans: map[string]uint64{}, tenants: map[string][]Change{},
		caughtUp: make(chan struct{})}
}

// CaughtUp is closed once Run has read the log up to where it ended when
// Run started.
func (f *ChangeFeed) CaughtUp() <-chan struct{} { return f.caughtUp }

func (f *ChangeFeed) markCaughtUp() { f.caughtUpOnce.Do(func() { close(f.caughtUp) }) }

// Run tails l from its start until ctx is done or l is closed, and returns
// why it stopped (ctx.Err() or configlog.ErrClosed).
func (f *ChangeFeed) Run(ctx context.Context, l configlog.Log) error {
	start, err := l.End(ctx)
	if err != nil {
		return err
	}
	if start <= 0 {
		f.markCaughtUp()
	}
	return l.Tail(ctx, 0, func(batch []configlog.Entry) error {
		for _, e := range batch {
			f.observe(e, e.Pos <= start)
		}
		if batch[len(batch)-1].Pos >= start {
			f.markCaughtUp()
		}
		return nil
	})
}

// observe applies one entry; catchUp says it was in the log when the feed
// started (so an undated record is starting state).
func (f *ChangeFeed) observe(e configlog.Entry, catchUp bool) {
	kind, ids, err := configlog.ParseKey(e.Key)
	if err != nil || (kind != configlog.KindApp && kind != configlog.KindPlan) {
		return
	}
	t, emit := e.Time, true
	if t.IsZero() {
		t, emit = f.now(), !catchUp
	}
	tenant, svc, id := ids[0], ids[1], ids[2]
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Change
	mk := func(kind, plan, text string) Change {
		return Change{Time: t.UTC(), Kind: kind, ServiceID: svc, PlanID: plan, Text: cutText(text), tenant: tenant}
	}
	switch kind {
	case configlog.KindApp:
		prev, had := f.apps[e.Key]
		if e.Tombstone() {
			delete(f.apps, e.Key)
			if had {
				c := mk(ChangeAppDeleted, prev.plan, "application "+id+" deleted")
				c.AppID = id
				out = append(out, c)
			}
			break
		}
		// Only the plan and the state: the feed reads every application
		// record of the log once at start, a million of them at a
		// million applications.
		var a struct {
			Plan  string `json:"plan"`
			State string `json:"state"`
		}
		if json.Unmarshal(e.Value, &a) != nil {
			return
		}
		cur := appState{plan: a.Plan, state: a.State}
		if cur.state == "" {
			cur.state = "active"
		}
		f.apps[e.Key] = cur
		switch {
		case !had:
			out = append(out, mk(ChangeAppCreated, cur.plan, "application "+id+" created on plan "+cur.plan))
		default:
			if prev.plan != cur.plan {
				out = append(out, mk(ChangePlanChanged, cur.plan, "application "+id+": plan "+prev.plan+" → "+cur.plan))
			}
			if prev.state != cur.state {
				k := ChangeAppResumed
				if cur.state == "suspended" {
					k = ChangeAppSuspended
				}
				out = append(out, mk(k, cur.plan, "application "+id+" "+cur.state))
			}
		}
		for i := range out {
			out[i].AppID = id
		}
	case configlog.KindPlan:
		if e.Tombstone() {
			delete(f.plans, e.Key)
			return
		}
		var p catalog.PlanSpec
		if json.Unmarshal(e.Value, &p) != nil {
			return
		}
		h := limitsHash(p.Limits)
		prev, had := f.plans[e.Key]
		f.plans[e.Key] = h
		if had && prev != h {
			out = append(out, mk(ChangeLimitsEdited, id, limitsText(id, p.Limits)))
		}
	}
	if !emit || len(out) == 0 {
		return
	}
	ring := f.tenants[tenant]
	for _, c := range out {
		// Kept in time order for query's binary search: record times of
		// writers on different nodes may be a little out of order.
		i := len(ring)
		for i > 0 && ring[i-1].Time.After(c.Time) {
			i--
		}
		ring = append(ring, Change{})
		copy(ring[i+1:], ring[i:])
		ring[i] = c
	}
	if len(ring) >= 2*MaxChangesPerTenant {
		// Trimmed once per MaxChangesPerTenant changes, not on each: a
		// full ring takes every change from here on (a million
		// applications created are a million changes to read at start).
		n := copy(ring, ring[len(ring)-MaxChangesPerTenant:])
		clear(ring[n:])
		ring = ring[:n]
	}
	f.tenants[tenant] = ring
}

// limitsHash identifies a plan's limits (order matters: it is the plan's).
func limitsHash(ls []catalog.LimitSpec) uint64 {
	h := fnv.New64a()
	for _, l := range ls {
		h.Write([]byte(l.Metric))
		h.Write([]byte{0})
		h.Write([]byte(l.Period))
		h.Write([]byte{0})
		h.Write(strconv.AppendInt(nil, l.Max, 10))
		h.Write([]byte{0})
		h.Write([]byte(l.Consistency))
		h.Write([]byte{1})
	}
	return h.Sum64()
}

// cutText cuts s to at most maxChangeText bytes, at a rune boundary, with
// "..." when cut: ids of up to 255 bytes make long sentences.
func cutText(s string) string {
	if len(s) <= maxChangeText {
		return s
	}
	i := maxChangeText - 3
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// limitsText describes a plan's new limits (mk cuts it to maxChangeText).
func limitsText(plan string, ls []catalog.LimitSpec) string {
	var b strings.Builder
	b.WriteString("plan " + plan + " limits:")
	if len(ls) == 0 {
		b.WriteString(" none")
	}
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(" " + l.Metric + " " + strconv.FormatInt(l.Max, 10) + "/" + l.Period)
		if b.Len() > maxChangeText {
			break // cut by cutText; the rest of up to 256 limits need not be written
		}
	}
	return b.String()
}

// query returns the tenant's changes of service svc (and app, if not empty)
// in [from, to), oldest first, the latest limit of them.
func (f *ChangeFeed) query(tenant, svc, app string, from, to time.Time, limit int) []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	ring := f.tenants[tenant]
	if n := len(ring) - MaxChangesPerTenant; n > 0 {
		ring = ring[n:] // the latest MaxChangesPerTenant are kept
	}
	i := sort.Search(len(ring), func(i int) bool { return !ring[i].Time.Before(from) })
	var out []Change
	for ; i < len(ring) && ring[i].Time.Before(to); i++ {
		c := ring[i]
		if c.ServiceID == svc && (app == "" || c.AppID == app) {
			c.T = c.Time.Format(time.RFC3339Nano) // here: most changes kept are never asked for
			out = append(out, c)
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// changesAnswer is the answer of /api/v1/changes.
type changesAnswer struct {
	From    string   `json:"from"`
	To      string   `json:"to"`
	Changes []Change `json:"changes"`
}

// changes answers GET /api/v1/changes: the service's configuration changes
// in [from, to), oldest first, at most limit (default 100) of the latest.
func (s *Server) changes(ctx *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot) *apiError {
	id, ok := arg(ctx, "service_id")
	svc, e := service(snap, sc, id, ok)
	if e != nil {
		return e
	}
	app := ""
	if v, ok := arg(ctx, "app_id"); ok || ctx.QueryArgs().Has("app_id") {
		if e = checkAppID(v); e != nil {
			return e
		}
		app = v
	}
	limit := 100
	if _, ok := arg(ctx, "limit"); ok || ctx.QueryArgs().Has("limit") {
		if limit, e = parseLimit(ctx); e != nil {
			return e
		}
	}
	from, to, e := timeRange(ctx, s.now())
	if e != nil {
		return e
	}
	if s.changeFeed == nil {
		return errf(503, "changes_unavailable", "this query node does not follow the configuration log")
	}
	out := s.changeFeed.query(sc.tenant, svc.ID, app, from, to, limit)
	if out == nil {
		out = []Change{}
	}
	return writeJSON(ctx, changesAnswer{From: from.UTC().Format(time.RFC3339Nano), To: to.UTC().Format(time.RFC3339Nano), Changes: out})
}
