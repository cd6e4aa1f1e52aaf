package smapi

import (
	"crypto/subtle"
	"math"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

var (
	minusOne    = []byte("-1")
	msgHandoff  = []byte("the application's limits are being handed over between nodes, retry later")
	msgNoConfig = []byte("no configuration loaded")
	msgSinkFull = []byte("usage events cannot be recorded right now, retry later")
)

// resolveService finds the service the call's credentials open. The order
// follows 3scale: a provider_key (with or without service_id) wins over a
// service_token; a credential never opens another tenant's service because
// every lookup goes through the credential's own grant.
func resolveService(snap *catalog.Snapshot, providerKey, serviceToken, serviceID []byte) (*catalog.Service, parseError) {
	switch {
	case len(providerKey) > 0:
		pa := snap.ProviderKeys[string(providerKey)]
		if pa == nil {
			if len(serviceID) == 0 {
				return nil, parseError{code: errProviderKeyInvalidOrServiceMissing}
			}
			return nil, parseError{code: errProviderKeyInvalid}
		}
		if len(serviceID) == 0 {
			if pa.Default == nil {
				return nil, parseError{code: errProviderKeyInvalidOrServiceMissing}
			}
			return pa.Default, parseError{}
		}
		svc := pa.Services[string(serviceID)]
		if svc == nil {
			return nil, parseError{code: errServiceIDInvalid, arg: serviceID}
		}
		return svc, parseError{}
	case len(serviceToken) > 0:
		if len(serviceID) == 0 {
			return nil, parseError{code: errServiceIDMissing}
		}
		g := snap.ServiceToken[string(serviceToken)]
		if g == nil {
			return nil, parseError{code: errServiceTokenInvalid, arg: serviceID}
		}
		svc := g.Services[string(serviceID)]
		if svc == nil {
			return nil, parseError{code: errServiceTokenInvalid, arg: serviceID}
		}
		return svc, parseError{}
	}
	return nil, parseError{code: errProviderKeyOrServiceTokenRequired}
}

// resolveUsage maps raw usage to limiter usage of svc's metrics. "#N" sets
// the metric's counters to N and, unless flat, its ancestors' too, as
// 3scale does: each ancestor gets its own Set entry (replacing any entry
// the call had for it), so that the limiter, which sets only the metric
// named, and the events, which the rollups replay, agree.
func resolveUsage(svc *catalog.Service, raw []rawUsage, dst []limiter.Usage, flat bool) ([]limiter.Usage, parseError) {
	for i := range raw {
		id, ok := svc.MetricIndex[string(raw[i].metric)]
		if !ok {
			return dst, parseError{code: errMetricInvalid, arg: raw[i].metric}
		}
		n, set, ok := parseUsageValue(raw[i].value)
		if !ok {
			return dst, parseError{code: errUsageValueInvalid, arg: raw[i].metric, arg2: raw[i].value}
		}
		dst = append(dst, limiter.Usage{Metric: id, Value: n, Set: set})
	}
	if flat {
		return dst, parseError{}
	}
	for i := 0; i < len(dst); i++ {
		u := dst[i]
		if !u.Set {
			continue
		}
		for a := parentOf(svc, u.Metric); a != limiter.NoParent; a = parentOf(svc, a) {
			j := 0
			for j < len(dst) && dst[j].Metric != a {
				j++
			}
			if j == len(dst) {
				if len(dst) == limiter.MaxUsage {
					return dst, parseError{code: errBadRequest, arg: msgTooMuchUsage}
				}
				dst = append(dst, limiter.Usage{})
			}
			dst[j] = limiter.Usage{Metric: a, Value: u.Value, Set: true}
		}
	}
	return dst, parseError{}
}

// parentOf is m's parent in svc, limiter.NoParent for a root.
func parentOf(svc *catalog.Service, m limiter.MetricID) limiter.MetricID {
	if int(m) >= len(svc.Parents) {
		return limiter.NoParent
	}
	return svc.Parents[m]
}

// checkSums refuses usage whose entries, summed for one metric with its
// children (as the limiter and the rollups count them), would pass the
// largest int64: such a total cannot be counted, and wrapping it would turn
// usage into a negative number. Values themselves are never negative (the
// parser accepts digits only). setMode is true for the batch report, where
// "#N" sets the metric's counter.
func checkSums(svc *catalog.Service, usage []limiter.Usage, setMode bool) parseError {
	m, err := limiter.CheckUsage(usage, svc.Parents, setMode)
	if err == nil {
		return parseError{}
	}
	pe := parseError{code: errUsageOverflow}
	if int(m) < len(svc.Metrics) {
		pe.arg = s2b(svc.Metrics[m].Name)
	}
	return pe
}

// resolveApp finds the application: by user_key in user_key mode, by app_id
// otherwise (and always on the oauth endpoints). Lookups go through the
// service's own tables, so another service's (or tenant's) credentials are
// simply not found.
func resolveApp(svc *catalog.Service, appID, userKey []byte, oauth bool) (*catalog.App, parseError) {
	if len(appID) > 0 && len(userKey) > 0 {
		return nil, parseError{code: errAuthenticationError}
	}
	if svc.AuthMode == catalog.AuthUserKey && !oauth {
		if len(userKey) == 0 {
			return nil, parseError{code: errUserKeyInvalid}
		}
		app := svc.AppByUserKey(userKey)
		if app == nil {
			return nil, parseError{code: errUserKeyInvalid, arg: userKey}
		}
		return app, parseError{}
	}
	app := svc.AppBytes(appID)
	if app == nil {
		return nil, parseError{code: errApplicationNotFound, arg: appID}
	}
	return app, parseError{}
}

// keyMatches reports whether key is one of the app's keys, comparing in
// constant time per key.
func keyMatches(app *catalog.App, key []byte) bool {
	ok := 0
	for _, k := range app.Keys {
		ok |= subtle.ConstantTimeCompare(s2b(k), key)
	}
	return ok == 1
}

// check runs the denial checks in 3scale's order (after the app was
// found): app key, redirect URL (oauth endpoints), referrer, application
// state, service state. It returns denyNone when all pass, or an error code
// for a broken referrer filter.
//
// The app key follows 3scale's two rules. On the oauth endpoints, and on
// the plain ones for an OAuth service (OpenID Connect gateways call
// authrep.xml), app_key is the client secret and is checked only when
// sent: absent passes, empty or wrong is denied (also for an app without
// keys). Otherwise, in app_id mode, an app with keys needs one of them.
func check(svc *catalog.Service, app *catalog.App, p *authParams, oauth bool) (denial, []byte, errCode) {
	switch {
	case oauth || svc.AuthMode == catalog.AuthOAuth:
		if p.hasAppKey && len(p.appKey) == 0 {
			return denyApplicationKeyMissing, nil, errNone
		}
		if p.hasAppKey && !keyMatches(app, p.appKey) {
			return denyApplicationKeyInvalid, nil, errNone
		}
	case svc.AuthMode == catalog.AuthAppID && len(app.Keys) > 0:
		if len(p.appKey) == 0 {
			return denyApplicationKeyMissing, nil, errNone
		}
		if !keyMatches(app, p.appKey) {
			return denyApplicationKeyInvalid, nil, errNone
		}
	}
	if oauth {
		// redirect_url, the older name, wins when both are sent; an empty
		// one checks nothing.
		switch {
		case p.hasRedirectURL:
			if len(p.redirectURL) > 0 && string(p.redirectURL) != app.RedirectURL {
				return denyRedirectURLInvalid, p.redirectURL, errNone
			}
		case p.hasRedirectURI:
			if len(p.redirectURI) > 0 && string(p.redirectURI) != app.RedirectURL {
				return denyRedirectURIInvalid, p.redirectURI, errNone
			}
		}
	}
	if svc.ReferrerFiltersRequired && len(app.ReferrerFilters) > 0 && string(p.referrer) != "*" {
		matched := false
		for _, f := range app.ReferrerFilters {
			if f == "" {
				return denyNone, nil, errReferrerFilterInvalid
			}
			if len(p.referrer) > 0 && catalog.MatchReferrer(f, b2s(p.referrer)) {
				matched = true
				break
			}
		}
		if !matched {
			return denyReferrerNotAllowed, p.referrer, errNone
		}
	}
	if app.State != catalog.Active {
		return denyApplicationNotActive, nil, errNone
	}
	if svc.State != catalog.Active {
		return denyServiceNotActive, nil, errNone
	}
	return denyNone, nil, errNone
}

// authorize serves authorize, authrep and their oauth variants.
func (s *Server) authorize(ctx *fasthttp.RequestCtx, st *reqState, ep endpoint) outcome {
	oauth := ep == epOAuthAuthorize || ep == epOAuthAuthrep
	rep := ep == epAuthrep || ep == epOAuthAuthrep
	st.opts = parseOptions(ctx.Request.Header.PeekBytes(hdrOptions), &st.arena)
	p := &st.p
	e := parseAuthQuery(ctx.URI().QueryString(), &st.arena, p)
	if p.hasNoBody && !st.opts.noBodySet {
		st.opts.noBody = noBodyOn(p.noBody)
	}
	if e.code != errNone {
		return s.writeError(ctx, st, e.code, e.arg, e.arg2)
	}
	if p.hasUserID {
		return s.writeError(ctx, st, errEndUsersNoLongerSupported, nil, nil)
	}
	snap := s.cat.Load()
	if snap == nil {
		return s.writeError(ctx, st, errServiceUnavailable, msgNoConfig, nil)
	}
	svc, e := resolveService(snap, p.providerKey, p.serviceToken, p.serviceID)
	if e.code != errNone {
		return s.writeError(ctx, st, e.code, e.arg, e.arg2)
	}
	st.usage, e = resolveUsage(svc, p.usage, st.usage[:0], st.opts.flatUsage)
	if e.code != errNone {
		return s.writeError(ctx, st, e.code, e.arg, e.arg2)
	}
	if e = checkSums(svc, st.usage, true); e.code != errNone {
		return s.writeError(ctx, st, e.code, e.arg, e.arg2)
	}
	app, e := resolveApp(svc, p.appID, p.userKey, oauth)
	if e.code != errNone {
		return s.writeError(ctx, st, e.code, e.arg, e.arg2)
	}
	deny, denyArg, ec := check(svc, app, p, oauth)
	if ec != errNone {
		return s.writeError(ctx, st, ec, nil, nil)
	}
	token := int32(-1)
	if s.router != nil && deny == denyNone {
		var v Verdict
		token, v = s.router.Route(ctx, svc, app)
		switch v {
		case Answered:
			return outcomeOf(ctx.Response.StatusCode())
		case Unavailable:
			ctx.Response.Header.Set("Retry-After", "1")
			return s.writeError(ctx, st, errServiceUnavailable, msgHandoff, nil)
		}
		out := s.decide(ctx, st, svc, app, deny, denyArg, oauth, rep)
		units := int64(0)
		if rep && out == outAuthorized {
			for _, u := range st.usage {
				if !u.Set { // a set is not units used
					units += min(u.Value, math.MaxInt64-units) // saturates: usage is never negative
				}
			}
		}
		s.router.Done(token, units)
		return out
	}
	return s.decide(ctx, st, svc, app, deny, denyArg, oauth, rep)
}

// outcomeOf classifies a relayed answer by its status.
func outcomeOf(status int) outcome {
	switch {
	case status < 300:
		return outAuthorized
	case status == fasthttp.StatusConflict:
		return outDenied
	}
	return outError
}

// decide checks and counts the call's usage against its limits, records its
// event and answers.
func (s *Server) decide(ctx *fasthttp.RequestCtx, st *reqState, svc *catalog.Service, app *catalog.App, deny denial, denyArg []byte, oauth, rep bool) outcome {
	p := &st.p

	req := &st.lreq
	req.App = app.Key
	req.Limits = nil
	capped := false
	var capToken uint32
	// One version of the plan for the whole decision: a plan change may
	// publish another at any moment.
	plan := app.Plan()
	if plan != nil {
		req.Limits = plan.Limits
		if s.caps != nil && len(plan.Strict) > 0 {
			st.capped, capToken = s.caps.Cap(append(st.capped[:0], plan.Limits...), app, s.clock())
			req.Limits, capped = st.capped, true
		}
	}
	req.Parents = svc.Parents
	req.Usage = st.usage
	req.Flat = st.opts.flatUsage
	req.Mode = limiter.ModeAuthorize
	if deny == denyNone && rep {
		// A refused event must not leave counted-but-unrecorded usage: ask
		// the sink first. A refusal between this check and Append below is
		// still possible; then the usage stays counted (limits err on the
		// strict side until the window closes) and the caller gets a 503.
		if s.health != nil && !s.health.Accepting() {
			s.m.eventsRefused.Inc()
			return s.writeError(ctx, st, errServiceUnavailable, msgSinkFull, nil)
		}
		req.Mode = limiter.ModeAuthRep
	}
	// Denied calls still get the plan's usage reports, read without counting.
	s.lim.Do(req, &st.dec)
	if capped {
		s.caps.Done(capToken)
		// The answer shows the plan's max; the region's share only decides.
		for i := range st.dec.Reports {
			r := &st.dec.Reports[i]
			r.Limit.Max = plan.Limits[i].Max
			r.Exceeded = r.Current > r.Limit.Max
		}
	}
	if st.dec.Err != nil {
		// checkSums and the parser leave the limiter nothing to refuse
		// (authrep checks current+delta <= max, which cannot wrap); this
		// only guards against that changing.
		return s.writeError(ctx, st, errUsageOverflow, nil, nil)
	}
	if deny == denyNone && !st.dec.Allowed {
		deny = denyLimitsExceeded
	}

	now := s.clock().UnixMilli()
	if deny != denyNone {
		s.emit(st, event.KindDenied, svc, app, nil, now, now, parseLogCode(p.logCode), deny.String())
	} else if rep {
		if err := s.emit(st, event.KindAuthrep, svc, app, st.usage, now, now, parseLogCode(p.logCode), ""); err != nil {
			return s.writeError(ctx, st, errServiceUnavailable, msgSinkFull, nil)
		}
		s.watchAuthrep(st, svc, app)
	}
	return s.writeStatus(ctx, st, app, deny, denyArg, oauth)
}

// emit hands one event to the sink. Usage metric names are the catalog's
// interned strings, so filling the event does not allocate. With
// flat_usage the entries are marked Flat: the caller already added children
// into parents, so the rollup and the counters' restore must not add them
// again.
func (s *Server) emit(st *reqState, kind event.Kind, svc *catalog.Service, app *catalog.App, usage []limiter.Usage, ts, received int64, code int16, reason string) error {
	ev := &st.ev
	u := ev.Usage[:0]
	for _, x := range usage {
		u = append(u, event.Usage{Metric: svc.MetricName(x.Metric), Value: x.Value, Set: x.Set, Flat: st.opts.flatUsage})
	}
	*ev = event.Event{
		ID:        s.ids.Next(),
		Kind:      kind,
		TS:        ts,
		Received:  received,
		TenantID:  svc.Tenant.ID,
		ServiceID: svc.ID,
		AppID:     app.ID,
		Usage:     u,
		Code:      code,
		Reason:    reason,
		Region:    s.region,
		Node:      s.node,
	}
	if plan := app.Plan(); plan != nil {
		ev.PlanID = plan.ID
	}
	if err := s.sink.Append(ev); err != nil {
		s.m.eventsRefused.Inc()
		return err
	}
	s.m.eventsAppended.Inc()
	return nil
}

// writeStatus writes a 200 or 409 <status> answer with the extensions the
// caller asked for.
func (s *Server) writeStatus(ctx *fasthttp.RequestCtx, st *reqState, app *catalog.App, deny denial, denyArg []byte, oauth bool) outcome {
	h := &ctx.Response.Header
	out := outAuthorized
	if deny != denyNone {
		out = outDenied
		ctx.SetStatusCode(fasthttp.StatusConflict)
		if st.opts.rejectionReasonHeader {
			h.SetBytesKV(hdrRejection, s2b(deny.String()))
		}
	}
	h.SetContentTypeBytes(ctXML)
	if st.opts.limitHeaders && (deny == denyNone || deny == denyLimitsExceeded) {
		d := &st.dec
		if d.Constrained >= 0 && d.Constrained < len(d.Reports) {
			st.num = strconv.AppendInt(st.num[:0], d.Remaining, 10)
			h.SetBytesKV(hdrLimitRemain, st.num)
			st.num = strconv.AppendInt(st.num[:0], d.Reset, 10)
			h.SetBytesKV(hdrLimitReset, st.num)
			st.num = strconv.AppendInt(st.num[:0], d.Reports[d.Constrained].Limit.Max, 10)
			h.SetBytesKV(hdrLimitMax, st.num)
		} else {
			// No limit constrains the call: 3scale says -1 for both and
			// has no maximum to name.
			h.SetBytesKV(hdrLimitRemain, minusOne)
			h.SetBytesKV(hdrLimitReset, minusOne)
		}
	}
	if st.opts.noBody {
		return out
	}
	if deny != denyNone {
		st.reason = appendReason(st.reason[:0], deny, denyArg)
	}
	status := Status{
		Authorized:  deny == denyNone,
		Reason:      st.reason,
		App:         app,
		Reports:     st.dec.Reports,
		OAuth:       oauth,
		RedirectURI: oauth && !st.p.hasRedirectURL && st.p.hasRedirectURI,
		Hierarchy:   st.opts.hierarchy,
		ListAppKeys: st.opts.listAppKeys,
	}
	st.body = AppendStatus(st.body[:0], &status)
	ctx.Response.SetBody(st.body)
	return out
}
