package smapi

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

// Reported timestamps must lie within this window around the time of the
// call.
const (
	MaxReportAge    = 24 * time.Hour
	MaxReportFuture = time.Hour
)

// batchTxn is one transactions[I] entry of a batch report.
type batchTxn struct {
	label                                      []byte
	nilMark                                    bool // "transactions[I]" or "transactions[I]=" seen
	fields                                     bool // any field seen
	appID, userKey, appKey, timestamp, logCode []byte
	hasUserID                                  bool
	usage                                      []rawUsage

	// Filled by validation.
	app    *catalog.App
	lusage []limiter.Usage
	ts     int64      // unix ms
	err    parseError // why the transaction is not recorded (the others are)
}

// batch is a decoded batch report. Slices point into the request's arena.
type batch struct {
	serviceToken, serviceID, providerKey []byte
	seen                                 bool // a "transactions" parameter was present
	txns                                 []batchTxn
	last                                 int // index of the last txn touched, for the common in-order case
	labels                               labelTable
}

func (b *batch) reset() {
	b.serviceToken, b.serviceID, b.providerKey = nil, nil, nil
	b.seen = false
	b.txns = b.txns[:0]
	b.last = -1
	b.labels.reset()
}

// labelSlots is the size of a batch's label table: a power of two at least
// twice MaxTransactions, so that probe runs stay short.
const labelSlots = 2048

// labelTable finds a transaction by its label in constant time (a batch of
// n transactions would otherwise compare n²/2 labels). It is an
// open-addressing table of indexes into batch.txns whose slots are stamped
// with the batch's generation: a slot stamped with an older one is empty, so
// starting a new batch clears nothing.
type labelTable struct {
	gen   uint32
	slots [labelSlots]labelSlot
}

type labelSlot struct {
	gen uint32
	idx uint32
}

func (t *labelTable) reset() {
	t.gen++
	if t.gen == 0 {
		t.slots = [labelSlots]labelSlot{}
		t.gen = 1
	}
}

// find returns the slot that holds label, or the empty slot where it
// belongs.
func (t *labelTable) find(txns []batchTxn, label []byte) *labelSlot {
	h := uint32(2166136261) // FNV-1a
	for _, c := range label {
		h = (h ^ uint32(c)) * 16777619
	}
	for i := h; ; i++ {
		s := &t.slots[i&(labelSlots-1)]
		if s.gen != t.gen || bytes.Equal(txns[s.idx].label, label) {
			return s
		}
	}
}

var (
	msgTooManyTxns  = []byte("at most 1000 transactions are allowed per batch")
	msgTxnUsage     = []byte("usage must be sent as transactions[I][usage][METRIC]=VALUE")
	msgBodyTooLarge = []byte("request body is larger than 1048576 bytes")
	msgBadMultipart = []byte("multipart body is malformed")
	msgTSTooOld     = []byte("reporting transactions older than 86400 seconds is not allowed")
	msgTSTooNew     = []byte("reporting transactions more than 3600 seconds in the future is not allowed")
)

// txn returns the transaction labelled label, adding it on first sight.
func (b *batch) txn(label []byte) (*batchTxn, parseError) {
	if b.last >= 0 && b.last < len(b.txns) && bytes.Equal(b.txns[b.last].label, label) {
		return &b.txns[b.last], parseError{}
	}
	slot := b.labels.find(b.txns, label)
	if slot.gen == b.labels.gen {
		b.last = int(slot.idx)
		return &b.txns[slot.idx], parseError{}
	}
	if len(b.txns) == MaxTransactions {
		return nil, parseError{code: errBadRequest, arg: msgTooManyTxns}
	}
	n := len(b.txns)
	if n < cap(b.txns) {
		b.txns = b.txns[:n+1]
		t := &b.txns[n]
		u, lu := t.usage[:0], t.lusage[:0]
		*t = batchTxn{usage: u, lusage: lu}
	} else {
		b.txns = append(b.txns, batchTxn{})
	}
	b.last = n
	*slot = labelSlot{gen: b.labels.gen, idx: uint32(n)}
	t := &b.txns[n]
	t.label = label
	return t, parseError{}
}

// add records one decoded key=value of a batch report.
func (b *batch) add(k, v []byte) parseError {
	if !utf8.Valid(k) || !utf8.Valid(v) {
		return parseError{code: errNotValidData}
	}
	switch string(k) {
	case "service_token":
		b.serviceToken = v
		return parseError{}
	case "service_id":
		b.serviceID = v
		return parseError{}
	case "provider_key":
		b.providerKey = v
		return parseError{}
	case "transactions":
		b.seen = true
		if len(v) > 0 {
			return parseError{code: errTransactionsFormatInvalid}
		}
		return parseError{}
	}
	label, rest, ok := bracket(k, "transactions")
	if !ok {
		return parseError{} // unknown parameter
	}
	b.seen = true
	if len(label) == 0 {
		// The array form transactions[][...] cannot say which entries
		// belong together; only indexed (or named) entries can.
		return parseError{code: errTransactionsFormatInvalid}
	}
	t, e := b.txn(label)
	if e.code != errNone {
		return e
	}
	if len(rest) == 0 {
		if len(v) > 0 {
			return parseError{code: errTransactionsFormatInvalid}
		}
		t.nilMark = true
		return parseError{}
	}
	field, rest, ok := bracket(rest, "")
	if !ok {
		return parseError{code: errTransactionsFormatInvalid}
	}
	t.fields = true
	switch string(field) {
	case "app_id":
		t.appID = v
	case "user_key":
		t.userKey = v
	case "app_key":
		t.appKey = v
	case "timestamp":
		t.timestamp = v
	case "user_id":
		t.hasUserID = t.hasUserID || len(v) > 0
	case "log":
		if string(rest) == "[code]" {
			t.logCode = v
		}
		return parseError{}
	case "usage":
		metric, tail, ok := bracket(rest, "")
		if !ok || len(tail) != 0 {
			return parseError{code: errBadRequest, arg: msgTxnUsage}
		}
		return addUsage(&t.usage, metric, v)
	}
	if len(rest) != 0 {
		return parseError{code: errTransactionsFormatInvalid}
	}
	return parseError{}
}

// addURLEncoded decodes an urlencoded string into b.
func (b *batch) addURLEncoded(raw []byte, arena *[]byte) parseError {
	ensureArena(arena, len(raw))
	it := pairs{raw: raw, arena: arena}
	for {
		k, v, ok := it.next()
		if !ok {
			return parseError{}
		}
		if e := b.add(k, v); e.code != errNone {
			return e
		}
	}
}

// addMultipart decodes a multipart/form-data body into b, keeping the parts'
// order. Every field name and value is copied into the arena.
func (b *batch) addMultipart(body []byte, boundary string, arena *[]byte) parseError {
	ensureArena(arena, 2*len(body))
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		part, err := r.NextPart()
		if errors.Is(err, io.EOF) {
			return parseError{}
		}
		if err != nil {
			return parseError{code: errBadRequest, arg: msgBadMultipart}
		}
		name := part.FormName()
		a := *arena
		if cap(a)-len(a) < len(name) {
			return parseError{code: errBadRequest, arg: msgBadMultipart}
		}
		ks := len(a)
		a = append(a, name...)
		vs := len(a)
		for {
			if len(a) == cap(a) {
				// More decoded data than the body holds: not a sane form.
				return parseError{code: errBadRequest, arg: msgBadMultipart}
			}
			n, err := part.Read(a[len(a):cap(a)])
			a = a[:len(a)+n]
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return parseError{code: errBadRequest, arg: msgBadMultipart}
			}
		}
		*arena = a
		if name == "" {
			continue
		}
		if e := b.add(a[ks:vs:vs], a[vs:len(a):len(a)]); e.code != errNone {
			return e
		}
	}
}

// parseBatch decodes a batch report from the URL query and the body, by
// content type: none (the query alone, which is how the public 3scale Go
// client sends batches, or an urlencoded body sent without a type),
// application/x-www-form-urlencoded, or multipart/form-data. Query
// parameters come first, so a body value repeating a query key wins.
func parseBatch(b *batch, arena *[]byte, contentType, query, body []byte) parseError {
	b.reset()
	if len(body) > MaxBodySize {
		return parseError{code: errRequestEntityTooLarge, arg: msgBodyTooLarge}
	}
	media := contentType
	if i := bytes.IndexByte(media, ';'); i >= 0 {
		media = media[:i]
	}
	media = bytes.TrimSpace(media)
	// The type is checked with a body or without one, as 3scale does: a
	// client that names another type sends something Sluice cannot read.
	multipartBody := false
	switch {
	case len(media) == 0, bytes.EqualFold(media, []byte("application/x-www-form-urlencoded")):
	case bytes.EqualFold(media, []byte("multipart/form-data")):
		multipartBody = true
	default:
		return parseError{code: errContentTypeInvalid, arg: contentType}
	}
	*arena = (*arena)[:0]
	ensureArena(arena, len(query)+len(body))
	if e := b.addURLEncoded(query, arena); e.code != errNone {
		return e
	}
	if len(body) == 0 {
		return parseError{}
	}
	if !multipartBody {
		return b.addURLEncoded(body, arena)
	}
	_, params, err := mime.ParseMediaType(string(contentType))
	if err != nil || params["boundary"] == "" {
		return parseError{code: errContentTypeInvalid, arg: contentType}
	}
	return b.addMultipart(body, params["boundary"], arena)
}

// validate checks the whole batch before anything is recorded: structure,
// then service credentials, then each transaction. What 3scale checks when
// the request arrives (structure, credentials, user_id, and here also usage
// sums that cannot be counted) refuses the whole batch, the first problem
// deciding the answer. What 3scale finds only later, in its worker (an
// unknown application or user key, both app_id and user_key, an unknown
// metric, a bad usage value, a timestamp outside the window), marks that
// transaction alone (batchTxn.err): it is not recorded, the others are.
// An empty or unreadable timestamp is the time of the report, as in 3scale.
func (b *batch) validate(snap *catalog.Snapshot, nowMS int64, flat bool) (*catalog.Service, parseError) {
	if len(b.txns) == 0 {
		return nil, parseError{code: errTransactionsIsBlank}
	}
	for i := range b.txns {
		if t := &b.txns[i]; t.nilMark && !t.fields {
			return nil, parseError{code: errTransactionsHasNilTransaction}
		} else if t.nilMark {
			return nil, parseError{code: errTransactionsFormatInvalid}
		}
	}
	svc, e := resolveService(snap, b.providerKey, b.serviceToken, b.serviceID)
	if e.code != errNone {
		return nil, e
	}
	for i := range b.txns {
		if b.txns[i].hasUserID {
			return nil, parseError{code: errEndUsersNoLongerSupported}
		}
	}
	for i := range b.txns {
		t := &b.txns[i]
		t.err = parseError{}
		if t.app, t.err = resolveApp(svc, t.appID, t.userKey, false); t.err.code != errNone {
			continue
		}
		if t.lusage, t.err = resolveUsage(svc, t.usage, t.lusage[:0], flat); t.err.code != errNone {
			continue
		}
		if e = checkSums(svc, t.lusage, true); e.code != errNone {
			return nil, e
		}
		t.ts = nowMS
		if ts, ok := parseTimestamp(t.timestamp); ok {
			switch {
			case ts < nowMS-MaxReportAge.Milliseconds():
				t.err = parseError{code: errTransactionTimestampTooOld, arg: msgTSTooOld}
			case ts > nowMS+MaxReportFuture.Milliseconds():
				t.err = parseError{code: errTransactionTimestampTooNew, arg: msgTSTooNew}
			default:
				t.ts = ts
			}
		}
	}
	return svc, parseError{}
}

// valid counts the transactions that validation did not drop.
func (b *batch) valid() int {
	n := 0
	for i := range b.txns {
		if b.txns[i].err.code == errNone {
			n++
		}
	}
	return n
}

// report serves POST /transactions.xml: validate the whole batch, then for
// each transaction hand its event to the sink and count it in the limiter.
func (s *Server) report(ctx *fasthttp.RequestCtx, st *reqState) outcome {
	st.opts = parseOptions(ctx.Request.Header.PeekBytes(hdrOptions), &st.arena)
	if st.batch == nil {
		st.batch = &batch{}
	}
	b := st.batch
	if e := parseBatch(b, &st.arena, ctx.Request.Header.ContentType(), ctx.URI().QueryString(), ctx.PostBody()); e.code != errNone {
		return s.writeError(ctx, st, e.code, e.arg, e.arg2)
	}
	snap := s.cat.Load()
	if snap == nil {
		return s.writeError(ctx, st, errServiceUnavailable, msgNoConfig, nil)
	}
	now := s.clock()
	nowMS := now.UnixMilli()
	svc, e := b.validate(snap, nowMS, st.opts.flatUsage)
	if e.code != errNone {
		return s.writeError(ctx, st, e.code, e.arg, e.arg2)
	}
	if s.health != nil && !s.health.Accepting() {
		s.m.eventsRefused.Inc()
		return s.writeError(ctx, st, errServiceUnavailable, msgSinkFull, nil)
	}
	refused, firstRefused := 0, -1
	for i := range b.txns {
		t := &b.txns[i]
		if t.err.code != errNone {
			s.errs.add(svc, now.Unix(), t.label, t.err)
			s.m.reportTxnsDropped.Inc()
			continue
		}
		var limits []limiter.Limit
		if plan := t.app.Plan(); plan != nil {
			limits = plan.Limits
		}
		// The limiter first, as for authrep: a transaction that would take
		// a counter past the largest int64 is refused before its event
		// exists, so it counts nowhere (neither here nor in the rollups);
		// the others still count. If the sink then refuses the event, the
		// transaction stays counted here (limits err on the strict side
		// until the window closes) and the caller gets a 503.
		if len(t.lusage) > 0 {
			if err := s.record(st, t.app, limits, svc, t.lusage, time.UnixMilli(t.ts)); err != nil {
				refused++
				if firstRefused < 0 {
					firstRefused = i
				}
				continue
			}
		}
		// A refusal in the middle of a batch leaves the earlier
		// transactions recorded; the caller may retry (at-least-once).
		if err := s.emit(st, event.KindReport, svc, t.app, t.lusage, t.ts, nowMS, parseLogCode(t.logCode), ""); err != nil {
			return s.writeError(ctx, st, errServiceUnavailable, msgSinkFull, nil)
		}
		if len(t.lusage) > 0 {
			s.watchReport(st, svc, t.app, limits)
		}
	}
	if refused > 0 {
		if refused == b.valid() {
			st.num = append(st.num[:0], "nothing of the batch was recorded"...)
		} else {
			st.num = strconv.AppendInt(st.num[:0], int64(refused), 10)
			st.num = append(st.num, " of "...)
			st.num = strconv.AppendInt(st.num, int64(b.valid()), 10)
			st.num = append(st.num, " transactions were not recorded; the others were"...)
		}
		return s.writeError(ctx, st, errUsageOverflow, b.txns[firstRefused].label, st.num)
	}
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.Response.Header.SetContentTypeBytes(ctXML)
	return outAuthorized
}
