package smapi

import (
	"bytes"
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// Bounds of the report error log.
const (
	// MaxServiceErrors is how many report errors a node keeps per service,
	// newest first (3scale keeps 1,000 too).
	MaxServiceErrors = 1000
	// maxErrorServices bounds the services a node keeps errors for; past
	// it, a service's errors make room by dropping another's.
	maxErrorServices = 4096
	// maxQuoted bounds each caller-sent value an error message quotes.
	maxQuoted = 128
	// defaultErrorsPerPage and maxErrorsPerPage bound one page of
	// GET /services/{id}/errors.xml.
	defaultErrorsPerPage = 100
	maxErrorsPerPage     = MaxServiceErrors
)

// reportError is a batch report transaction that was not recorded.
type reportError struct {
	at    int64 // unix seconds
	code  string
	label string // the transaction's label (transactions[LABEL])
	msg   string
}

// serviceErrors is one service's ring of report errors.
type serviceErrors struct {
	ring []reportError // grows to MaxServiceErrors, then wraps
	next int           // where the next error goes once the ring is full
}

// errorLog keeps, per service, the last report transactions that were
// dropped and why: 3scale answers a batch report 202 before it has looked
// at the transactions and files such errors where the provider can read
// them. It lives in the node's memory (see the package doc).
type errorLog struct {
	mu sync.Mutex
	m  map[string]*serviceErrors // by errorKey
}

// errorKey names svc across configuration reloads (a reload builds new
// Service values).
func errorKey(svc *catalog.Service) string { return svc.Tenant.ID + "\x00" + svc.ID }

// truncQuoted cuts a caller-sent value an error message quotes.
func truncQuoted(b []byte) []byte {
	if len(b) > maxQuoted {
		return b[:maxQuoted]
	}
	return b
}

// add files one dropped transaction of svc.
func (l *errorLog) add(svc *catalog.Service, at int64, label []byte, e parseError) {
	msg := appendMessage(nil, e.code, truncQuoted(e.arg), truncQuoted(e.arg2))
	re := reportError{at: at, code: e.code.String(), label: string(truncQuoted(label)), msg: string(msg)}
	key := errorKey(svc)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]*serviceErrors)
	}
	se := l.m[key]
	if se == nil {
		if len(l.m) >= maxErrorServices {
			for k := range l.m {
				delete(l.m, k)
				break
			}
		}
		se = &serviceErrors{}
		l.m[key] = se
	}
	if len(se.ring) < MaxServiceErrors {
		se.ring = append(se.ring, re)
		return
	}
	se.ring[se.next] = re
	se.next = (se.next + 1) % MaxServiceErrors
}

// page appends svc's errors, newest first, skipping skip of them and
// taking at most n, and returns how many the service has.
func (l *errorLog) page(dst []reportError, svc *catalog.Service, skip, n int) ([]reportError, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	se := l.m[errorKey(svc)]
	if se == nil {
		return dst, 0
	}
	total := len(se.ring)
	for i := skip; i < total && i < skip+n; i++ {
		// The newest is just before next (or the last appended).
		idx := se.next - 1 - i
		if len(se.ring) < MaxServiceErrors {
			idx = total - 1 - i
		}
		for idx < 0 {
			idx += total
		}
		dst = append(dst, se.ring[idx])
	}
	return dst, total
}

// clear forgets svc's errors.
func (l *errorLog) clear(svc *catalog.Service) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, errorKey(svc))
}

const (
	errorsPrefix = "/services/"
	errorsSuffix = "/errors.xml"
)

// errorsServiceID returns the service id of a /services/{id}/errors.xml
// path, ok false for any other path.
func errorsServiceID(path []byte) ([]byte, bool) {
	if !bytes.HasPrefix(path, []byte(errorsPrefix)) || !bytes.HasSuffix(path, []byte(errorsSuffix)) ||
		len(path) <= len(errorsPrefix)+len(errorsSuffix) {
		return nil, false
	}
	id := path[len(errorsPrefix) : len(path)-len(errorsSuffix)]
	if bytes.IndexByte(id, '/') >= 0 {
		return nil, false
	}
	return id, true
}

var allowGetDelete = []byte("GET, DELETE")

// serveErrors answers GET (list, newest first: page, per_page) and DELETE
// (forget) of /services/{id}/errors.xml, opened by the service's
// credentials as a report is.
func (s *Server) serveErrors(ctx *fasthttp.RequestCtx, id []byte) outcome {
	if !ctx.IsGet() && !ctx.IsDelete() {
		ctx.Response.Header.SetBytesKV(hdrAllow, allowGetDelete)
		return s.writeError(ctx, nil, errMethodNotAllowed, nil, nil)
	}
	if !s.ready() {
		return s.writeError(ctx, nil, errServiceUnavailable, nil, nil)
	}
	args := ctx.QueryArgs()
	snap := s.cat.Load()
	if snap == nil {
		return s.writeError(ctx, nil, errServiceUnavailable, msgNoConfig, nil)
	}
	svc, e := resolveService(snap, args.Peek("provider_key"), args.Peek("service_token"), id)
	if e.code != errNone {
		return s.writeError(ctx, nil, e.code, truncQuoted(e.arg), nil)
	}
	if ctx.IsDelete() {
		s.errs.clear(svc)
		ctx.Response.Header.SetContentTypeBytes(ctXML)
		return outAuthorized
	}
	page, ok := pageArg(args.Peek("page"), 1)
	perPage, ok2 := pageArg(args.Peek("per_page"), defaultErrorsPerPage)
	if !ok || !ok2 || perPage > maxErrorsPerPage {
		return s.writeError(ctx, nil, errBadRequest, msgErrorsPaging, nil)
	}
	skip := min((page-1)*perPage, MaxServiceErrors)
	list, total := s.errs.page(nil, svc, skip, perPage)
	body := append(make([]byte, 0, 256+len(list)*160), xmlHeader...)
	body = append(body, `<errors count="`...)
	body = strconv.AppendInt(body, int64(total), 10)
	body = append(body, `">`...)
	for i := range list {
		re := &list[i]
		body = append(body, `<error code="`...)
		body = appendEscapedString(body, re.code)
		body = append(body, `" timestamp="`...)
		body = appendTime(body, re.at)
		body = append(body, `" transaction="`...)
		body = appendEscapedString(body, re.label)
		body = append(body, `">`...)
		body = appendEscapedString(body, re.msg)
		body = append(body, `</error>`...)
	}
	body = append(body, `</errors>`...)
	ctx.Response.Header.SetContentTypeBytes(ctXML)
	ctx.Response.SetBody(body)
	return outAuthorized
}

var msgErrorsPaging = []byte("page must be 1 or more and per_page 1 to 1000")

// pageArg parses a positive paging parameter; an absent one is def.
func pageArg(v []byte, def int) (int, bool) {
	if len(v) == 0 {
		return def, true
	}
	if len(v) > 6 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n >= 1
}
