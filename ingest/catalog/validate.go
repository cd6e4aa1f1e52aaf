package catalog

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/sluice-dev/sluice/limiter"
)

// Bounds of a Document. They keep one tenant's configuration from costing
// the process unbounded memory or the hot path unbounded work, and they are
// far above what 3scale itself allows (5 referrer filters, 5 app keys).
const (
	MaxTenants         = 10_000    // tenants per document
	MaxServices        = 1_000     // services per tenant
	MaxMetrics         = 256       // metrics per service
	MaxMetricDepth     = 8         // levels of the metric hierarchy (3scale uses 2)
	MaxPlans           = 1_000     // plans per service
	MaxLimits          = 256       // limits per plan
	MaxApps            = 1_000_000 // applications per service
	MaxAppKeys         = 256       // app keys per application (list_app_keys shows at most 256)
	MaxReferrerFilters = 64        // referrer filters per application
	MaxTokens          = 64        // service tokens per service, query tokens per tenant
	MaxIDLen           = 64        // tenant, service and plan ids
	MaxAppIDLen        = 255       // application ids
	MaxNameLen         = 255       // metric names, plan names, referrer filters
	MaxCredentialLen   = 256       // tokens, provider keys, user keys, app keys
	MaxRedirectURLLen  = 2048      // redirect_url
)

// Problem is one thing wrong with a Document, at Path (the field's location,
// as in `tenants[0].services[1].plans[0].limits[2].period`).
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// String returns "path: message".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ValidationError lists every problem found in a Document. Messages never
// contain a credential's value.
type ValidationError struct {
	Problems []Problem
}

// Error lists the problems, one per line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problem", len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteByte('s')
	}
	b.WriteString("):")
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Validate checks everything the configuration contract requires and
// returns nil or a *ValidationError listing every problem with its path.
func (d *Document) Validate() error {
	if probs := d.validate(); len(probs) > 0 {
		return &ValidationError{Problems: probs}
	}
	return nil
}

// Auth modes and states as the document spells them.
const (
	ModeUserKey    = "user_key"
	ModeAppID      = "app_id"
	ModeOAuth      = "oauth"
	StateActive    = "active"
	StateSuspended = "suspended"
)

// credKind is the kind of a secret, for the global uniqueness check.
type credKind uint8

const (
	credAdmin credKind = iota
	credQuery
	credServiceToken
	credProviderKey
)

type credOwner struct {
	tenant   int
	service  int // -1 for tenant-level credentials
	kind     credKind
	path     string
	reported bool // a cross-tenant collision was reported at path
}

type validator struct {
	probs []Problem
	creds map[string]credOwner
	svcs  map[string]svcOwner
}

type svcOwner struct {
	tenant   int
	path     string
	reported bool
}

func (v *validator) add(path, format string, args ...any) {
	v.probs = append(v.probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (d *Document) validate() []Problem {
	v := &validator{creds: map[string]credOwner{}, svcs: map[string]svcOwner{}}
	tp := FieldName(d, &d.Tenants)
	if len(d.Tenants) > MaxTenants {
		v.add(tp, "more than %d tenants", MaxTenants)
	}
	seen := map[string]int{}
	for i := range d.Tenants {
		p := index(tp, i)
		t := &d.Tenants[i]
		if !validTenantID(t.ID) {
			v.add(at(p, t, &t.ID), "invalid tenant id %q: want 1 to %d of a-z 0-9 - _", t.ID, MaxIDLen)
		} else if j, dup := seen[t.ID]; dup {
			v.add(at(p, t, &t.ID), "duplicate tenant id %q (also %s)", t.ID, index(tp, j))
		} else {
			seen[t.ID] = i
		}
		v.tenant(i, p, t)
	}
	return v.probs
}

func validTenantID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// printable reports whether s is visible ASCII without spaces: ids and
// credentials travel in query strings and XML attributes.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func (v *validator) id(path, what, s string, max int) bool {
	switch {
	case s == "":
		v.add(path, "%s is required", what)
	case len(s) > max:
		v.add(path, "%s longer than %d bytes", what, max)
	case !printable(s):
		v.add(path, "%s %q must be printable ASCII without spaces", what, s)
	default:
		return true
	}
	return false
}

// uniqueID checks the id at path of item i of the list at list: v.id, and
// that no item before it in seen (id to index) has the same id.
func (v *validator) uniqueID(list string, i int, path, what, id string, max int, seen map[string]int) {
	if !v.id(path, what, id, max) {
		return
	}
	if j, dup := seen[id]; dup {
		v.add(path, "duplicate %s %q (also %s)", what, id, index(list, j))
		return
	}
	seen[id] = i
}

// credential checks a secret's syntax. Messages never include the value.
func (v *validator) credential(path, s string) bool {
	switch {
	case s == "":
		v.add(path, "must not be empty")
	case len(s) > MaxCredentialLen:
		v.add(path, "longer than %d bytes", MaxCredentialLen)
	case !printable(s):
		v.add(path, "must be printable ASCII without spaces")
	default:
		return true
	}
	return false
}

// claim records a tenant- or service-level secret and reports a collision:
// a secret belongs to one tenant and one kind; only service tokens and
// provider keys may be repeated, by services of the same tenant.
func (v *validator) claim(s string, o credOwner) {
	prev, ok := v.creds[s]
	if !ok {
		v.creds[s] = o
		return
	}
	switch {
	case prev.tenant != o.tenant:
		// Reported on both sides, so that whoever edits either tenant sees
		// it in their own part of the document; never says where.
		v.add(o.path, "already in use by another tenant")
		if !prev.reported {
			v.add(prev.path, "already in use by another tenant")
			prev.reported = true
			v.creds[s] = prev
		}
	case prev.kind != o.kind:
		v.add(o.path, "already in use as %s", prev.path)
	case o.kind != credServiceToken && o.kind != credProviderKey:
		v.add(o.path, "duplicate (also %s)", prev.path)
	case prev.service == o.service:
		v.add(o.path, "duplicate (also %s)", prev.path)
	}
}

// tokens checks the list of secrets at path p and claims each for owner.
func (v *validator) tokens(p, what string, list []string, owner credOwner) {
	if len(list) > MaxTokens {
		v.add(p, "more than %d %s", MaxTokens, what)
	}
	for i, tok := range list {
		owner.path = index(p, i)
		if v.credential(owner.path, tok) {
			v.claim(tok, owner)
		}
	}
}

func (v *validator) tenant(ti int, p string, t *TenantSpec) {
	if ap := at(p, t, &t.AdminToken); v.credential(ap, t.AdminToken) {
		v.claim(t.AdminToken, credOwner{tenant: ti, service: -1, kind: credAdmin, path: ap})
	}
	v.tokens(at(p, t, &t.QueryTokens), "query tokens", t.QueryTokens, credOwner{tenant: ti, service: -1, kind: credQuery})
	v.webhook(t, p)
	ssp := at(p, t, &t.Services)
	if len(t.Services) > MaxServices {
		v.add(ssp, "more than %d services", MaxServices)
	}
	defaultAt := ""
	for si := range t.Services {
		s := &t.Services[si]
		sp := index(ssp, si)
		if v.id(at(sp, s, &s.ID), "service id", s.ID, MaxIDLen) {
			if prev, dup := v.svcs[s.ID]; dup {
				if prev.tenant != ti {
					v.add(at(sp, s, &s.ID), "service id %q already in use by another tenant", s.ID)
					if !prev.reported {
						v.add(at(prev.path, s, &s.ID), "service id %q already in use by another tenant", s.ID)
						prev.reported = true
						v.svcs[s.ID] = prev
					}
				} else {
					v.add(at(sp, s, &s.ID), "duplicate service id %q (also %s)", s.ID, prev.path)
				}
			} else {
				v.svcs[s.ID] = svcOwner{tenant: ti, path: sp}
			}
		}
		if s.Default {
			if defaultAt != "" {
				v.add(at(sp, s, &s.Default), "tenant already has a default service (%s)", defaultAt)
			} else {
				defaultAt = sp
			}
		}
		v.service(ti, si, sp, s)
	}
}

func (v *validator) service(ti, si int, p string, s *ServiceSpec) {
	v.tokens(at(p, s, &s.Tokens), "tokens", s.Tokens, credOwner{tenant: ti, service: si, kind: credServiceToken})
	if pk := at(p, s, &s.ProviderKey); s.ProviderKey != "" && v.credential(pk, s.ProviderKey) {
		v.claim(s.ProviderKey, credOwner{tenant: ti, service: si, kind: credProviderKey, path: pk})
	}
	mode := s.AuthMode
	switch mode {
	case "":
		mode = ModeUserKey
	case ModeUserKey, ModeAppID, ModeOAuth:
	default:
		v.add(at(p, s, &s.AuthMode), "unknown %s %q: want %s, %s or %s", FieldName(s, &s.AuthMode), s.AuthMode, ModeUserKey, ModeAppID, ModeOAuth)
		mode = "" // unknown: skip the mode-dependent checks of applications
	}
	v.state(p, FieldName(s, &s.State), s.State)

	metrics := v.metrics(at(p, s, &s.Metrics), s.Metrics)
	plans := v.plans(at(p, s, &s.Plans), s.Plans, metrics)
	v.apps(at(p, s, &s.Applications), s.Applications, plans, mode)
	v.gateway(at(p, s, &s.Gateway), s.Gateway, metrics)
	v.alertThresholdList(at(p, s, &s.AlertThresholds), s.AlertThresholds)
}

// state checks the state s of the field name below path p.
func (v *validator) state(p, name, s string) {
	switch s {
	case "", StateActive, StateSuspended:
	default:
		v.add(field(p, name), "unknown %s %q: want %s or %s", name, s, StateActive, StateSuspended)
	}
}

// validMetricName: metric names appear as usage[NAME] in query strings and
// in XML attributes.
func validMetricName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

func (v *validator) metrics(p string, ms []MetricSpec) map[string]int {
	if len(ms) > MaxMetrics {
		v.add(p, "more than %d metrics", MaxMetrics)
	}
	idx := make(map[string]int, len(ms))
	for i := range ms {
		m := &ms[i]
		mp := index(p, i)
		if !validMetricName(m.Name) {
			v.add(at(mp, m, &m.Name), "invalid metric name %q: want 1 to %d of A-Z a-z 0-9 _ - . :", m.Name, MaxNameLen)
			continue
		}
		if j, dup := idx[m.Name]; dup {
			v.add(at(mp, m, &m.Name), "duplicate metric %q (also %s)", m.Name, index(p, j))
			continue
		}
		idx[m.Name] = i
	}
	if len(ms) > MaxMetrics {
		return idx // the hierarchy walk below is quadratic: not on oversized input
	}
	for i := range ms {
		m := &ms[i]
		if m.Parent == "" {
			continue
		}
		pp := at(index(p, i), m, &m.Parent)
		j, ok := idx[m.Parent]
		switch {
		case !ok:
			v.add(pp, "unknown metric %q", m.Parent)
			continue
		case m.Parent == m.Name:
			v.add(pp, "metric %q cannot be its own parent", m.Name)
			continue
		}
		// Walk up: a cycle through this metric, or a chain too deep.
		chain := []string{m.Name, m.Parent}
		for depth := 1; ; depth++ {
			up := ms[j].Parent
			if up == "" {
				if depth >= MaxMetricDepth {
					v.add(pp, "metric hierarchy deeper than %d levels", MaxMetricDepth)
				}
				break
			}
			chain = append(chain, up)
			if up == m.Name {
				v.add(pp, "cycle in metric hierarchy: %s", strings.Join(chain, " -> "))
				break
			}
			k, ok := idx[up]
			if !ok || depth > len(ms) {
				break // reported on that metric, or a cycle not through m
			}
			j = k
		}
	}
	return idx
}

// planInfo is what applications need to know about a service's plans.
type planInfo map[string]bool

func (v *validator) plans(p string, ps []PlanSpec, metrics map[string]int) planInfo {
	if len(ps) > MaxPlans {
		v.add(p, "more than %d plans", MaxPlans)
	}
	seen := make(map[string]int, len(ps))
	for i := range ps {
		pl := &ps[i]
		pp := index(p, i)
		v.uniqueID(p, i, at(pp, pl, &pl.ID), "plan id", pl.ID, MaxIDLen, seen)
		if len(pl.Name) > MaxNameLen {
			v.add(at(pp, pl, &pl.Name), "longer than %d bytes", MaxNameLen)
		}
		lsp := at(pp, pl, &pl.Limits)
		if len(pl.Limits) > MaxLimits {
			v.add(lsp, "more than %d limits", MaxLimits)
		}
		type lkey struct {
			metric string
			period limiter.Period
		}
		limits := make(map[lkey]int, len(pl.Limits))
		for li := range pl.Limits {
			l := &pl.Limits[li]
			lp := index(lsp, li)
			okMetric := true
			if _, ok := metrics[l.Metric]; !ok {
				okMetric = false
				if l.Metric == "" {
					v.add(at(lp, l, &l.Metric), "%s is required", FieldName(l, &l.Metric))
				} else {
					v.add(at(lp, l, &l.Metric), "unknown metric %q", l.Metric)
				}
			}
			per, err := parsePeriod(FieldName(l, &l.Period), l.Period)
			if err != nil {
				v.add(at(lp, l, &l.Period), "%s", err)
			}
			if l.Max < 0 {
				v.add(at(lp, l, &l.Max), "%s must be >= 0, got %d", FieldName(l, &l.Max), l.Max)
			}
			switch l.Consistency {
			case "", ConsistencyExact, ConsistencyLocal:
			default:
				v.add(at(lp, l, &l.Consistency), "unknown %s %q (want %s or %s)", FieldName(l, &l.Consistency), l.Consistency, ConsistencyExact, ConsistencyLocal)
			}
			switch l.Scope {
			case "", ScopeGlobal, ScopeRegion:
			default:
				v.add(at(lp, l, &l.Scope), "unknown %s %q (want %s or %s)", FieldName(l, &l.Scope), l.Scope, ScopeGlobal, ScopeRegion)
			}
			if l.Strict {
				switch {
				case l.Scope == ScopeRegion:
					v.add(at(lp, l, &l.Strict), "%s applies to global limits only (%s is %s)", FieldName(l, &l.Strict), FieldName(l, &l.Scope), l.Scope)
				case l.Consistency == ConsistencyLocal:
					v.add(at(lp, l, &l.Strict), "%s needs %s %s (the owner decides each call)", FieldName(l, &l.Strict), FieldName(l, &l.Consistency), ConsistencyExact)
				case err == nil && per.Unit == limiter.Sliding:
					v.add(at(lp, l, &l.Strict), "%s needs a calendar period: a sliding window has no remainder to share", FieldName(l, &l.Strict))
				}
			}
			if okMetric && err == nil {
				k := lkey{l.Metric, per}
				if j, dup := limits[k]; dup {
					v.add(lp, "duplicate limit for %s per %s (also %s)", l.Metric, per, index(lsp, j))
				} else {
					limits[k] = li
				}
			}
		}
	}
	info := make(planInfo, len(seen))
	for id := range seen {
		info[id] = true
	}
	return info
}

// parsePeriod wraps limiter.ParsePeriod with the document's wording; name
// is the field's.
func parsePeriod(name, s string) (limiter.Period, error) {
	per, err := limiter.ParsePeriod(s)
	if err == nil {
		return per, nil
	}
	switch {
	case s == "":
		return per, fmt.Errorf("%s is required", name)
	case strings.HasPrefix(s, "sliding:"):
		return per, err
	}
	return per, fmt.Errorf("unknown period %q", s)
}

func (v *validator) apps(p string, as []AppSpec, plans planInfo, mode string) {
	if len(as) > MaxApps {
		v.add(p, "more than %d applications", MaxApps)
	}
	ids := make(map[string]int, len(as))
	userKeys := make(map[string]int, len(as))
	for i := range as {
		a := &as[i]
		if !fullChecksOnly && plainValid(a, plans, mode, ids, userKeys) {
			// What the checks below would find nothing wrong with, without
			// the paths they would build for their messages: at a million
			// applications, most of validation's time.
			ids[a.ID] = i
			if mode == ModeUserKey {
				userKeys[a.UserKey] = i
			}
			continue
		}
		ap := index(p, i)
		v.uniqueID(p, i, at(ap, a, &a.ID), "application id", a.ID, MaxAppIDLen, ids)
		switch {
		case a.Plan == "":
			v.add(at(ap, a, &a.Plan), "%s is required", FieldName(a, &a.Plan))
		case !plans[a.Plan]:
			v.add(at(ap, a, &a.Plan), "unknown plan %q", a.Plan)
		}
		v.state(ap, FieldName(a, &a.State), a.State)

		uk := FieldName(a, &a.UserKey)
		ukp := field(ap, uk)
		switch {
		case mode == ModeUserKey && a.UserKey == "":
			v.add(ukp, "%s is required in %s mode", uk, ModeUserKey)
		case mode == ModeUserKey:
			if v.credential(ukp, a.UserKey) {
				if j, dup := userKeys[a.UserKey]; dup {
					v.add(ukp, "duplicate %s (also %s)", uk, field(index(p, j), uk))
				} else {
					userKeys[a.UserKey] = i
				}
			}
		case mode != "" && a.UserKey != "":
			v.add(ukp, "%s is not allowed in %s mode: applications are identified by id", uk, mode)
		}

		kp := at(ap, a, &a.Keys)
		if mode == ModeUserKey && len(a.Keys) > 0 {
			v.add(kp, "app keys are not allowed in %s mode", ModeUserKey)
		}
		if len(a.Keys) > MaxAppKeys {
			v.add(kp, "more than %d keys", MaxAppKeys)
		}
		keys := make(map[string]int, len(a.Keys))
		for ki, k := range a.Keys {
			kip := index(kp, ki)
			if !v.credential(kip, k) {
				continue
			}
			if j, dup := keys[k]; dup {
				v.add(kip, "duplicate key (also %s)", index(kp, j))
			} else {
				keys[k] = ki
			}
		}

		rp := at(ap, a, &a.ReferrerFilters)
		if len(a.ReferrerFilters) > MaxReferrerFilters {
			v.add(rp, "more than %d referrer filters", MaxReferrerFilters)
		}
		filters := make(map[string]int, len(a.ReferrerFilters))
		for ri, f := range a.ReferrerFilters {
			rip := index(rp, ri)
			if err := checkReferrerFilter(f); err != nil {
				v.add(rip, "%s", err)
				continue
			}
			if j, dup := filters[f]; dup {
				v.add(rip, "duplicate referrer filter %q (also %s)", f, index(rp, j))
			} else {
				filters[f] = ri
			}
		}

		ru := FieldName(a, &a.RedirectURL)
		up := field(ap, ru)
		switch {
		case a.RedirectURL == "":
		case mode != ModeOAuth && mode != "":
			v.add(up, "%s is only allowed in %s mode", ru, ModeOAuth)
		case len(a.RedirectURL) > MaxRedirectURLLen:
			v.add(up, "longer than %d bytes", MaxRedirectURLLen)
		default:
			u, err := url.Parse(a.RedirectURL)
			if err != nil || u.Scheme == "" || u.Host == "" || !printable(a.RedirectURL) {
				v.add(up, "invalid %s %q: want an absolute URL like https://example.com/callback", ru, a.RedirectURL)
			}
		}
	}
}

// fullChecksOnly turns plainValid's shortcut off: the tests compare both.
var fullChecksOnly = false

// plainValid reports whether a, an application of a service in mode with
// plans, passes every check of validator.apps, given the ids and user_keys
// of the applications before it, in the common case: a known mode, no
// redirect_url, few keys and filters. False means "check it in full", not
// "invalid".
func plainValid(a *AppSpec, plans planInfo, mode string, ids, userKeys map[string]int) bool {
	if a.ID == "" || len(a.ID) > MaxAppIDLen || !printable(a.ID) || a.Plan == "" || !plans[a.Plan] || a.RedirectURL != "" {
		return false
	}
	if _, dup := ids[a.ID]; dup {
		return false
	}
	switch a.State {
	case "", StateActive, StateSuspended:
	default:
		return false
	}
	switch mode {
	case ModeUserKey:
		if !plainCredential(a.UserKey) || len(a.Keys) > 0 {
			return false
		}
		if _, dup := userKeys[a.UserKey]; dup {
			return false
		}
	case ModeAppID, ModeOAuth:
		if a.UserKey != "" {
			return false
		}
	default:
		return false
	}
	if len(a.Keys) > 8 || len(a.ReferrerFilters) > 8 {
		return false
	}
	for i, k := range a.Keys {
		if !plainCredential(k) || slices.Contains(a.Keys[:i], k) {
			return false
		}
	}
	for i, f := range a.ReferrerFilters {
		if checkReferrerFilter(f) != nil || slices.Contains(a.ReferrerFilters[:i], f) {
			return false
		}
	}
	return true
}

// plainCredential reports whether validator.credential accepts s.
func plainCredential(s string) bool {
	return s != "" && len(s) <= MaxCredentialLen && printable(s)
}

// checkReferrerFilter checks a referrer filter's syntax: a host name or
// address pattern where '*' matches any run of characters, such as
// "*.example.com", "example.com", "192.168.0.*", "localhost:8080" or "*".
func checkReferrerFilter(f string) error {
	if f == "" {
		return fmt.Errorf("referrer filter must not be empty")
	}
	if len(f) > MaxNameLen {
		return fmt.Errorf("referrer filter longer than %d bytes", MaxNameLen)
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '*' || c == ':' || c == '[' || c == ']') {
			return fmt.Errorf("invalid referrer filter %q: want a host pattern of letters, digits, . - _ : and * wildcards", f)
		}
	}
	if strings.Contains(f, "**") {
		return fmt.Errorf("invalid referrer filter %q: repeated *", f)
	}
	return nil
}

// MatchReferrer reports whether referrer matches filter, a pattern where '*'
// matches any run of characters (including none). The comparison ignores
// ASCII case, as host names do. It does not allocate.
func MatchReferrer(filter, referrer string) bool {
	// Iterative wildcard match with single-star backtracking: linear in
	// practice, O(len(filter)*len(referrer)) at worst.
	fi, ri := 0, 0
	star, mark := -1, 0
	for ri < len(referrer) {
		switch {
		case fi < len(filter) && filter[fi] == '*':
			star, mark = fi, ri
			fi++
		case fi < len(filter) && lower(filter[fi]) == lower(referrer[ri]):
			fi++
			ri++
		case star >= 0:
			fi = star + 1
			mark++
			ri = mark
		default:
			return false
		}
	}
	for fi < len(filter) && filter[fi] == '*' {
		fi++
	}
	return fi == len(filter)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
