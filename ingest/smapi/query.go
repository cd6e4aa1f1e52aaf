package smapi

import (
	"bytes"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/limiter"
)

// MaxURLLength bounds the request URI (path and query) of every call. It is
// the body limit: the public 3scale Go client sends a batch report in the
// query string of a POST, so a batch that fits in a body must fit in a URL.
// Reading such a line does not cost idle connections memory (NewServer).
const MaxURLLength = MaxBodySize

// MaxBodySize bounds a request body (the batch report's form).
const MaxBodySize = 1 << 20

// MaxTransactions bounds the transactions of one batch report.
const MaxTransactions = 1000

// rawUsage is one usage[METRIC]=VALUE pair as sent, decoded.
type rawUsage struct {
	metric, value []byte
}

// authParams are the parameters of authorize and authrep, decoded. Every
// slice points into the request's scratch arena and is valid only while the
// request is being handled.
type authParams struct {
	serviceToken, serviceID, providerKey []byte
	appID, appKey, userKey               []byte
	referrer, redirectURL, redirectURI   []byte
	logCode                              []byte
	noBody                               []byte
	hasAppID, hasUserKey, hasUserID      bool
	hasAppKey, hasNoBody                 bool
	hasRedirectURL, hasRedirectURI       bool
	usage                                []rawUsage // capacity limiter.MaxUsage
}

func (p *authParams) reset() {
	u := p.usage[:0]
	*p = authParams{}
	p.usage = u
}

// parseError is a parser's verdict: the error code and the caller input its
// message quotes.
type parseError struct {
	code      errCode
	arg, arg2 []byte
}

// pairs iterates over the key=value pairs of an urlencoded string, decoding
// each key and value into arena. The arena must have capacity for len(raw)
// more bytes, so that decoding never reallocates it and earlier slices stay
// valid (decoding never makes a string longer).
type pairs struct {
	raw   []byte
	arena *[]byte
}

// next returns the next decoded pair, or ok=false at the end. Empty
// segments ("a=1&&b=2") are skipped.
func (it *pairs) next() (key, value []byte, ok bool) {
	for len(it.raw) > 0 {
		var seg []byte
		if i := bytes.IndexByte(it.raw, '&'); i >= 0 {
			seg, it.raw = it.raw[:i], it.raw[i+1:]
		} else {
			seg, it.raw = it.raw, nil
		}
		if len(seg) == 0 {
			continue
		}
		k, v := seg, []byte(nil)
		if i := bytes.IndexByte(seg, '='); i >= 0 {
			k, v = seg[:i], seg[i+1:]
		}
		return it.decode(k), it.decode(v), true
	}
	return nil, nil, false
}

// decode appends the form-decoding of s ('+' is a space, %XX a byte; a
// malformed escape stands for itself, as fasthttp and browsers treat it) to
// the arena and returns the appended part.
func (it *pairs) decode(s []byte) []byte {
	a := *it.arena
	start := len(a)
	for len(s) > 0 {
		// Copy the run up to the next escape at once: most bytes are plain.
		i := 0
		for i < len(s) && s[i] != '%' && s[i] != '+' {
			i++
		}
		a = append(a, s[:i]...)
		if i == len(s) {
			break
		}
		c := s[i]
		s = s[i+1:]
		switch {
		case c == '+':
			c = ' '
		case len(s) >= 2 && isHex(s[0]) && isHex(s[1]):
			c = unhex(s[0])<<4 | unhex(s[1])
			s = s[2:]
		}
		a = append(a, c)
	}
	*it.arena = a
	return a[start:len(a):len(a)]
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// ensureArena makes sure *arena can take n more bytes without growing.
func ensureArena(arena *[]byte, n int) {
	if cap(*arena)-len(*arena) < n {
		grown := make([]byte, len(*arena), len(*arena)+n+512)
		copy(grown, *arena)
		*arena = grown
	}
}

// bracket splits "name[inner]rest" into inner and rest when key starts with
// prefix followed by '['; ok is false otherwise.
func bracket(key []byte, prefix string) (inner, rest []byte, ok bool) {
	if len(key) < len(prefix)+2 || string(key[:len(prefix)]) != prefix || key[len(prefix)] != '[' {
		return nil, nil, false
	}
	body := key[len(prefix)+1:]
	i := bytes.IndexByte(body, ']')
	if i < 0 {
		return nil, nil, false
	}
	return body[:i], body[i+1:], true
}

// parseAuthQuery decodes the query string of authorize/authrep into p. It
// rejects what no later check could make sense of: more than
// limiter.MaxUsage usage entries, malformed usage keys, and data that is not
// valid UTF-8. Unknown parameters are ignored, as 3scale does.
func parseAuthQuery(raw []byte, arena *[]byte, p *authParams) parseError {
	ensureArena(arena, len(raw))
	it := pairs{raw: raw, arena: arena}
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		if !utf8.Valid(k) || !utf8.Valid(v) {
			return parseError{code: errNotValidData}
		}
		switch string(k) {
		case "service_token":
			p.serviceToken = v
		case "service_id":
			p.serviceID = v
		case "provider_key":
			p.providerKey = v
		case "app_id":
			p.appID, p.hasAppID = v, len(v) > 0
		case "app_key":
			p.appKey, p.hasAppKey = v, true
		case "user_key":
			p.userKey, p.hasUserKey = v, len(v) > 0
		case "referrer":
			p.referrer = v
		case "redirect_url":
			p.redirectURL, p.hasRedirectURL = v, true
		case "redirect_uri":
			p.redirectURI, p.hasRedirectURI = v, true
		case "user_id":
			p.hasUserID = p.hasUserID || len(v) > 0
		case "log[code]":
			p.logCode = v
		case "no_body":
			// 3scale still honours the no_body extension as a parameter.
			p.noBody, p.hasNoBody = v, true
		case "usage":
			return parseError{code: errBadRequest, arg: msgUsageFormat}
		default:
			metric, rest, ok := bracket(k, "usage")
			if !ok {
				continue // unknown parameter, or log[request] and friends
			}
			if len(rest) != 0 {
				return parseError{code: errBadRequest, arg: msgUsageFormat}
			}
			if err := addUsage(&p.usage, metric, v); err.code != errNone {
				return err
			}
		}
	}
	return parseError{}
}

var (
	msgUsageFormat  = []byte("usage must be sent as usage[METRIC]=VALUE")
	msgTooMuchUsage = []byte("at most 64 usage entries are allowed per call or transaction")
)

// addUsage records metric=value; a repeated metric replaces the earlier
// value (the last one wins, as with Rack's parameter parsing).
func addUsage(u *[]rawUsage, metric, value []byte) parseError {
	for i := range *u {
		if bytes.Equal((*u)[i].metric, metric) {
			(*u)[i].value = value
			return parseError{}
		}
	}
	if len(*u) == limiter.MaxUsage {
		return parseError{code: errBadRequest, arg: msgTooMuchUsage}
	}
	*u = append(*u, rawUsage{metric: metric, value: value})
	return parseError{}
}

// parseUsageValue parses "N" or "#N" (N a non-negative decimal that fits in
// int64). ok is false for anything else, including the empty string.
func parseUsageValue(v []byte) (n int64, set, ok bool) {
	if len(v) > 0 && v[0] == '#' {
		set = true
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 19 {
		return 0, false, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		n = n*10 + int64(c-'0')
		if n < 0 {
			return 0, false, false
		}
	}
	return n, set, true
}

// parseLogCode parses log[code]: an HTTP status, 0 when absent or not a
// number in 0..999 (it is analytics, not worth rejecting a call over).
func parseLogCode(v []byte) int16 {
	if len(v) == 0 || len(v) > 3 {
		return 0
	}
	var n int16
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int16(c-'0')
	}
	return n
}

// options are the 3scale-options extensions a call asked for.
type options struct {
	noBody, rejectionReasonHeader, limitHeaders bool
	hierarchy, flatUsage, listAppKeys           bool
	noBodySet                                   bool // the header named no_body
}

// noBodyOn reports whether a no_body value enables the extension: 3scale
// takes any value but "0" and "false" (the parameter used to be a flag).
func noBodyOn(v []byte) bool { return string(v) != "0" && string(v) != "false" }

// parseOptions decodes the 3scale-options header (an urlencoded query
// string). Values "1" and "true" enable an extension, and no_body takes
// any value but "0" and "false" (noBodyOn); anything else and unknown
// extensions are ignored, as 3scale does.
func parseOptions(raw []byte, arena *[]byte) options {
	var o options
	if len(raw) == 0 {
		return o
	}
	ensureArena(arena, len(raw))
	it := pairs{raw: raw, arena: arena}
	for {
		k, v, ok := it.next()
		if !ok {
			return o
		}
		on := string(v) == "1" || string(v) == "true"
		switch string(k) {
		case "no_body":
			o.noBody, o.noBodySet = noBodyOn(v), true
		case "rejection_reason_header":
			o.rejectionReasonHeader = on
		case "limit_headers":
			o.limitHeaders = on
		case "hierarchy":
			o.hierarchy = on
		case "flat_usage":
			o.flatUsage = on
		case "list_app_keys":
			o.listAppKeys = on
		}
	}
}
