package envoyrls

import (
	"encoding/binary"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/sluice-dev/sluice/limiter"
)

// DefaultMaxValues is the default cap on active values per domain.
const DefaultMaxValues = 100_000

// keyBase is the first limiter.AppKey this package hands out. The catalog
// numbers its applications from 1 upwards, so the two never meet: the
// catalog would need 2^63 applications.
const keyBase = limiter.AppKey(1) << 63

// nextKey hands out limiter keys for values. A key is never reused, so a
// dropped value's counters can never be confused with a new one's.
var nextKey atomic.Uint64

// valueShards spreads a domain's values over independently locked maps.
const valueShards = 64

// overflowApp names the counter set shared by the values that came past a
// domain's cap.
const overflowApp = "~overflow"

// values holds one domain's active values: one limiter application per
// (descriptor, period, value), created on first use and dropped once every
// window it counted in has closed.
type values struct {
	max    int64
	active atomic.Int64
	over   atomic.Uint64 // calls that found the table full
	shards [valueShards]valueShard
}

type valueShard struct {
	mu sync.Mutex
	m  map[string]*valueEntry
}

// valueEntry is one active value. Its memory is the map key (the rule's
// path, the period and the values: about len(path)+len(values)+16 bytes),
// the application id (at most MaxAppIDBytes), and this struct with the map's
// overhead (about 100 bytes); its counter in the limiter is one 128-byte
// record.
type valueEntry struct {
	key     limiter.AppKey
	appID   string
	expires int64 // unix seconds after which every window it counted in has closed
}

func newValues(max int) *values {
	if max <= 0 {
		max = DefaultMaxValues
	}
	v := &values{max: int64(max)}
	for i := range v.shards {
		v.shards[i].m = make(map[string]*valueEntry)
	}
	return v
}

// get returns the limiter key and application id of the value named by id
// (the binary identity built by appendIdentity), creating it unless the
// domain is at its cap: then the descriptor's values share the counter set
// named by overflowID. It marks the entry live until the window of p open
// at now has closed. appID is computed only for a new entry.
func (v *values) get(id, overflowID []byte, appID func() string, p limiter.Period, now time.Time) (limiter.AppKey, string) {
	exp := expiry(p, now)
	sh := &v.shards[xxhash.Sum64(id)%valueShards]
	sh.mu.Lock()
	e := sh.m[string(id)]
	if e == nil {
		if v.active.Load() >= v.max {
			sh.mu.Unlock()
			v.over.Add(1)
			return v.getOverflow(overflowID, exp)
		}
		e = &valueEntry{key: keyBase + limiter.AppKey(nextKey.Add(1)), appID: appID()}
		sh.m[string(id)] = e
		v.active.Add(1)
	}
	e.expires = max(e.expires, exp)
	k, a := e.key, e.appID
	sh.mu.Unlock()
	return k, a
}

// getOverflow is get for the shared counter set of a descriptor past the
// cap. There is at most one per rate limit of the domain, so it ignores the
// cap.
func (v *values) getOverflow(id []byte, exp int64) (limiter.AppKey, string) {
	sh := &v.shards[xxhash.Sum64(id)%valueShards]
	sh.mu.Lock()
	e := sh.m[string(id)]
	if e == nil {
		e = &valueEntry{key: keyBase + limiter.AppKey(nextKey.Add(1)), appID: overflowApp}
		sh.m[string(id)] = e
		v.active.Add(1)
	}
	e.expires = max(e.expires, exp)
	k := e.key
	sh.mu.Unlock()
	return k, overflowApp
}

// sweep drops the values whose windows have all closed at now and returns
// how many it dropped. It holds one shard's lock at a time.
func (v *values) sweep(now time.Time) int {
	sec := now.Unix()
	n := 0
	for i := range v.shards {
		sh := &v.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.expires <= sec {
				delete(sh.m, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	v.active.Add(int64(-n))
	return n
}

// expiry is the unix second from which the window of p open at now holds
// nothing: the calendar window's end, or for a sliding window now plus the
// longest span the limiter may still count (W and one sub-bucket, W/7).
func expiry(p limiter.Period, now time.Time) int64 {
	if p.Unit == limiter.Sliding {
		w := p.Window + (p.Window+limiter.SubBuckets-1)/limiter.SubBuckets
		return now.Add(w).Unix() + 1
	}
	_, end := limiter.WindowBounds(p, now)
	return end
}

// appendIdentity appends the binary identity of a counter set: the rule's
// path and period, then per entry whether the configuration fixed it, its
// share_threshold pattern, or its value, each length-prefixed so that no two
// different descriptors share an identity.
func appendIdentity(dst []byte, r *rule, entries []Entry, m *match) []byte {
	dst = appendLenString(dst, r.path)
	dst = r.unit.period.AppendText(dst)
	dst = append(dst, 0)
	for i := range entries {
		switch {
		case !m.dyn[i]:
			dst = append(dst, 'f')
		case m.shared[i] != "":
			dst = append(dst, 's')
			dst = appendLenString(dst, m.shared[i])
		default:
			dst = append(dst, 'v')
			dst = appendLenString(dst, entries[i].Value)
		}
	}
	return dst
}

// appendOverflowIdentity appends the identity of the rule's shared counter
// set past the cap; the 0xFF cannot start a per-entry tag.
func appendOverflowIdentity(dst []byte, r *rule) []byte {
	dst = appendLenString(dst, r.path)
	dst = r.unit.period.AppendText(dst)
	return append(dst, 0, 0xFF)
}

func appendLenString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// MaxAppIDBytes bounds an application id built from descriptor values.
// Longer ids keep their first bytes and end in "~" and the xxhash of the
// whole, so that distinct values stay distinct in analytics.
const MaxAppIDBytes = 255

// appID is the application id of a counter set for events and the query
// API: the values the configuration did not fix (share_threshold entries
// by their pattern), escaped and joined by "/". Bytes outside printable
// ASCII, and '%', '/', '~' and space, are written %XX, so ids are printable
// and unambiguous; an empty id (no value, or one empty value) is "~".
func appID(entries []Entry, m *match) string {
	var buf [2 * MaxAppIDBytes]byte
	b := buf[:0]
	first := true
	for i := range entries {
		if !m.dyn[i] {
			continue
		}
		if !first {
			b = append(b, '/')
		}
		first = false
		s := entries[i].Value
		if m.shared[i] != "" {
			s = m.shared[i]
		}
		b = appendEscaped(b, s)
	}
	if len(b) == 0 {
		return "~"
	}
	if len(b) > MaxAppIDBytes {
		h := xxhash.Sum64(b)
		b = append(b[:MaxAppIDBytes-17], '~')
		b = appendHex16(b, h)
	}
	return string(b)
}

func appendEscaped(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || c == '%' || c == '/' || c == '~' {
			dst = append(dst, '%', hex[c>>4], hex[c&15])
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

func appendHex16(dst []byte, v uint64) []byte {
	s := strconv.FormatUint(v, 16)
	for i := len(s); i < 16; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}
