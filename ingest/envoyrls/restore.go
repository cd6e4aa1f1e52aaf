package envoyrls

import (
	"strings"
	"time"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

// Restore seeds the counters of the configuration in force from the usage
// of open calendar windows (chschema.OpenWindowSums: the rollups' sums),
// so that a restarted node does not start its windows from zero. A sum
// counts when it is of Options.Tenant, of a configured domain, of a
// descriptor's metric whose unit is the sum's, and its application id turns
// back into the descriptor's values (ids cut to MaxAppIDBytes do not, and
// are skipped). Second and sliding windows are not in the rollups and start
// empty; usage the rollup had not written yet (its lag) is not seen.
// Call it before serving. It returns how many counters it seeded and how
// many sums of the tenant it skipped.
func (s *Service) Restore(sums []chschema.WindowSum, now time.Time) (seeded, skipped int) {
	c := s.cfg.Load()
	if c == nil {
		return 0, 0
	}
	doms := *s.domains.Load()
	var (
		entries [MaxEntries]Entry
		m       match
		id, ov  []byte
	)
	for i := range sums {
		w := &sums[i]
		if w.Tenant != s.tenant {
			continue
		}
		d, ds := c.domains[w.Service], doms[w.Service]
		if d == nil || ds == nil || w.Sum < 0 {
			skipped++
			continue
		}
		ok := false
		for _, r := range d.rules {
			if r.unlimited || r.metric != w.Metric || r.unit.period.Unit != w.Unit {
				continue
			}
			var key limiter.AppKey
			id, ov = id[:0], appendOverflowIdentity(ov[:0], r)
			if w.App == overflowApp {
				key, _ = ds.vals.getOverflow(ov, expiry(r.unit.period, now))
			} else {
				es, good := valuesOf(r, w.App, entries[:], &m)
				if !good {
					continue
				}
				id = appendIdentity(id, r, es, &m)
				app := w.App
				key, _ = ds.vals.get(id, ov, func() string { return app }, r.unit.period, now)
			}
			if err := s.lim.Seed(key, 0, r.unit.period, w.Start.Unix(), w.Sum); err == nil {
				ok = true
			}
		}
		if ok {
			seeded++
		} else {
			skipped++
		}
	}
	return seeded, skipped
}

// valuesOf turns an application id (appID) back into the entries of rule
// r's descriptors, filling m as lookup would. It reports false for an id
// that is not one appID makes for r.
func valuesOf(r *rule, app string, buf []Entry, m *match) ([]Entry, bool) {
	if len(r.levels) > len(buf) {
		return nil, false
	}
	es := buf[:len(r.levels)]
	var dyn []int
	for i, lv := range r.levels {
		es[i] = Entry{}
		m.dyn[i] = lv.kind != 'f'
		m.shared[i] = lv.pattern
		if m.dyn[i] {
			dyn = append(dyn, i)
		}
	}
	if app == "~" {
		// No value, or one empty one.
		if len(dyn) > 1 || (len(dyn) == 1 && m.shared[dyn[0]] != "") {
			return nil, false
		}
		return es, true
	}
	if len(dyn) == 0 || strings.Contains(app, "~") {
		return nil, false // fixed only is "~"; a "~" elsewhere marks a cut id
	}
	parts := strings.Split(app, "/")
	if len(parts) != len(dyn) {
		return nil, false
	}
	for j, i := range dyn {
		v, ok := unescape(parts[j])
		if !ok {
			return nil, false
		}
		if m.shared[i] != "" {
			if v != m.shared[i] {
				return nil, false
			}
			continue
		}
		es[i].Value = v
	}
	return es, true
}

// unescape reverses appendEscaped.
func unescape(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		h, l := unhex(s[i+1]), unhex(s[i+2])
		if h < 0 || l < 0 {
			return "", false
		}
		b = append(b, byte(h<<4|l))
		i += 2
	}
	return string(b), true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// ApplyRemote counts another node's usage event of an Envoy domain in this
// node's counters, at the event's time (windows already closed ignore it),
// so that API nodes behind one gateway converge on each limit, as the
// cluster's projection does for catalog applications. It reports whether
// the event was one: an authrep of Options.Tenant, a configured domain and
// a descriptor's metric whose application id turns back into values.
// Events of this node must not be passed (they are counted already).
func (s *Service) ApplyRemote(ev *event.Event) bool {
	if ev.Kind != event.KindAuthrep || ev.TenantID != s.tenant || len(ev.Usage) != 1 {
		return false
	}
	c := s.cfg.Load()
	if c == nil {
		return false
	}
	d, ds := c.domains[ev.ServiceID], (*s.domains.Load())[ev.ServiceID]
	if d == nil || ds == nil || ev.Usage[0].Value < 0 {
		return false
	}
	var r *rule
	for _, x := range d.rules {
		if x.metric == ev.Usage[0].Metric {
			r = x
			break
		}
	}
	if r == nil {
		return false
	}
	if r.unlimited {
		return true // nothing to count
	}
	st := s.pool.Get().(*callState)
	defer s.pool.Put(st)
	now := s.clock()
	st.ov = appendOverflowIdentity(st.ov[:0], r)
	var key limiter.AppKey
	if ev.AppID == overflowApp {
		key, _ = ds.vals.getOverflow(st.ov, expiry(r.unit.period, now))
	} else {
		es, ok := valuesOf(r, ev.AppID, st.entries[:], &st.matches[0])
		if !ok {
			return false
		}
		st.id = appendIdentity(st.id[:0], r, es, &st.matches[0])
		app := ev.AppID
		key, _ = ds.vals.get(st.id, st.ov, func() string { return app }, r.unit.period, now)
	}
	st.limits[0] = limiter.Limit{Metric: 0, Period: r.unit.period, Max: int64(r.rpu)}
	st.usage[0] = limiter.Usage{Metric: 0, Value: ev.Usage[0].Value}
	return s.lim.Record(key, st.limits[:], nil, st.usage[:], true, time.UnixMilli(ev.TS)) == nil
}
