package event

import (
	"errors"
	"fmt"
)

// Schema versions, the first byte of every encoded event. FORMAT.md
// documents each. Version 2 is version 1 with the usage flag "flat";
// AppendEvent writes it only for an event that has a flat entry, so that
// consumers that read only version 1 keep reading every other event.
const (
	Version  byte = 1
	Version2 byte = 2
)

// Errors returned (wrapped, with the field that failed) by Decode.
var (
	// ErrTruncated means the input ended inside a field.
	ErrTruncated = errors.New("event: truncated")
	// ErrVersion means the first byte is not a schema version this code reads.
	ErrVersion = errors.New("event: unknown schema version")
	// ErrInvalid means a field holds a value the format forbids (an unknown
	// kind, a non-minimal or overlong varint, a code outside int16, unknown
	// usage flags, trailing bytes).
	ErrInvalid = errors.New("event: invalid encoding")
)

// usage flag bits (FORMAT.md, "usage entry"); flagFlat from version 2.
const (
	flagSet  = 0x01
	flagFlat = 0x02
)

// AppendEvent appends the encoding of e to dst (version 1, or version 2 when
// an entry is Flat) and returns the extended slice, like strconv.AppendInt. It does not allocate when dst has
// enough capacity (EncodedLen tells how much is needed). It never fails:
// every Event has an encoding, though Decode rejects kinds other than the
// three defined ones, so producers must set Kind.
func AppendEvent(dst []byte, e *Event) []byte {
	v := Version
	if hasFlat(e.Usage) {
		v = Version2
	}
	dst = append(dst, v, byte(e.Kind))
	dst = append(dst, e.ID[:]...)
	dst = appendVarint(dst, e.TS)
	dst = appendVarint(dst, e.Received)
	dst = appendVarint(dst, int64(e.Code))
	dst = appendString(dst, e.TenantID)
	dst = appendString(dst, e.ServiceID)
	dst = appendString(dst, e.AppID)
	dst = appendString(dst, e.PlanID)
	dst = appendString(dst, e.Reason)
	dst = appendString(dst, e.Region)
	dst = appendString(dst, e.Node)
	dst = appendUvarint(dst, uint64(len(e.Usage)))
	for i := range e.Usage {
		u := &e.Usage[i]
		dst = appendString(dst, u.Metric)
		var flags byte
		if u.Set {
			flags |= flagSet
		}
		if u.Flat {
			flags |= flagFlat
		}
		dst = append(dst, flags)
		dst = appendVarint(dst, u.Value)
	}
	return dst
}

// Validate reports whether e can be encoded and decoded back: its Kind must
// be one of the defined kinds. Sinks call it so that a bad event is refused
// at the source instead of poisoning the topic for every consumer.
func Validate(e *Event) error {
	if e.Kind < KindAuthrep || e.Kind > KindDenied {
		return fmt.Errorf("kind %d: %w", e.Kind, ErrInvalid)
	}
	return nil
}

// EncodedLen returns the exact number of bytes AppendEvent appends for e, so
// that callers can size buffers up front.
func EncodedLen(e *Event) int {
	n := 2 + len(e.ID) + varintLen(e.TS) + varintLen(e.Received) + varintLen(int64(e.Code))
	n += stringLen(e.TenantID) + stringLen(e.ServiceID) + stringLen(e.AppID) + stringLen(e.PlanID)
	n += stringLen(e.Reason) + stringLen(e.Region) + stringLen(e.Node)
	n += uvarintLen(uint64(len(e.Usage)))
	for i := range e.Usage {
		n += stringLen(e.Usage[i].Metric) + 1 + varintLen(e.Usage[i].Value)
	}
	return n
}

// Decode parses one encoded event from b (all of b, no trailing bytes) into
// e, overwriting every field. It reuses the capacity of e.Usage; strings are
// freshly allocated (use a Decoder to intern them). Decode never panics on
// any input and never keeps a reference to b.
func Decode(b []byte, e *Event) error {
	return decode(b, e, nil)
}

// Decoder decodes events while interning their strings, so that decoding a
// stream of events from a few thousand apps allocates only for strings it has
// not seen yet. The zero value is ready to use. A Decoder is not safe for
// concurrent use.
type Decoder struct {
	// MaxStrings bounds the intern table; when it is reached the table is
	// cleared (a crude but allocation-bounded policy). Zero means 65536.
	MaxStrings int

	strs map[string]string
}

// Decode is like the package-level Decode but returns interned strings,
// which are shared between events and must be treated as immutable (as all
// Go strings are).
func (d *Decoder) Decode(b []byte, e *Event) error {
	return decode(b, e, d)
}

func (d *Decoder) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := d.strs[string(b)]; ok { // no allocation: the compiler optimizes map[string(b)]
		return s
	}
	max := d.MaxStrings
	if max <= 0 {
		max = 65536
	}
	if d.strs == nil {
		d.strs = make(map[string]string, 256)
	} else if len(d.strs) >= max {
		clear(d.strs)
	}
	s := string(b)
	d.strs[s] = s
	return s
}

// reader walks an encoded event with bounds checks on every read.
type reader struct {
	b   []byte
	off int
	d   *Decoder
}

func decode(b []byte, e *Event, d *Decoder) error {
	if len(b) == 0 {
		return fmt.Errorf("version: %w", ErrTruncated)
	}
	if b[0] != Version && b[0] != Version2 {
		return fmt.Errorf("%w %d", ErrVersion, b[0])
	}
	known := byte(flagSet)
	if b[0] == Version2 {
		known |= flagFlat
	}
	if len(b) < 2+len(e.ID) {
		return fmt.Errorf("header: %w", ErrTruncated)
	}
	kind := Kind(b[1])
	if kind < KindAuthrep || kind > KindDenied {
		return fmt.Errorf("kind %d: %w", kind, ErrInvalid)
	}
	e.Kind = kind
	copy(e.ID[:], b[2:18])
	r := reader{b: b, off: 18, d: d}
	var err error
	if e.TS, err = r.varint("ts"); err != nil {
		return err
	}
	if e.Received, err = r.varint("received"); err != nil {
		return err
	}
	code, err := r.varint("code")
	if err != nil {
		return err
	}
	if code < -1<<15 || code > 1<<15-1 {
		return fmt.Errorf("code %d: %w", code, ErrInvalid)
	}
	e.Code = int16(code)
	for _, f := range [...]struct {
		name string
		dst  *string
	}{
		{"tenant_id", &e.TenantID}, {"service_id", &e.ServiceID}, {"app_id", &e.AppID},
		{"plan_id", &e.PlanID}, {"reason", &e.Reason}, {"region", &e.Region}, {"node", &e.Node},
	} {
		if *f.dst, err = r.str(f.name); err != nil {
			return err
		}
	}
	n, err := r.uvarint("usage count")
	if err != nil {
		return err
	}
	// Every usage entry takes at least 3 bytes (empty metric, flags, value),
	// so a count beyond that is a lie: refuse it before allocating.
	if n > uint64(len(b)-r.off)/3 {
		return fmt.Errorf("usage count %d: %w", n, ErrTruncated)
	}
	us := e.Usage[:0]
	if cap(us) < int(n) {
		us = make([]Usage, 0, n)
	}
	for i := uint64(0); i < n; i++ {
		var u Usage
		if u.Metric, err = r.str("metric"); err != nil {
			return err
		}
		if r.off >= len(b) {
			return fmt.Errorf("usage flags: %w", ErrTruncated)
		}
		flags := b[r.off]
		r.off++
		if flags&^known != 0 {
			return fmt.Errorf("usage flags %#x: %w", flags, ErrInvalid)
		}
		u.Set = flags&flagSet != 0
		u.Flat = flags&flagFlat != 0
		if u.Value, err = r.varint("value"); err != nil {
			return err
		}
		us = append(us, u)
	}
	e.Usage = us
	if b[0] == Version2 && !hasFlat(us) {
		// Such an event is written as version 1: refusing the other
		// spelling keeps the encoding canonical.
		return fmt.Errorf("version 2 without a flat usage entry: %w", ErrInvalid)
	}
	if r.off != len(b) {
		return fmt.Errorf("%d trailing bytes: %w", len(b)-r.off, ErrInvalid)
	}
	return nil
}

// uvarint reads a minimal base-128 varint of at most 10 bytes.
func (r *reader) uvarint(field string) (uint64, error) {
	var x uint64
	for i := 0; i < 10; i++ {
		if r.off >= len(r.b) {
			return 0, fmt.Errorf("%s: %w", field, ErrTruncated)
		}
		c := r.b[r.off]
		r.off++
		if i == 9 && c > 1 {
			return 0, fmt.Errorf("%s: varint overflows 64 bits: %w", field, ErrInvalid)
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, fmt.Errorf("%s: non-minimal varint: %w", field, ErrInvalid)
			}
			return x, nil
		}
	}
	return 0, fmt.Errorf("%s: varint longer than 10 bytes: %w", field, ErrInvalid)
}

// varint reads a zigzag-encoded signed varint.
func (r *reader) varint(field string) (int64, error) {
	ux, err := r.uvarint(field)
	return int64(ux>>1) ^ -int64(ux&1), err
}

func (r *reader) str(field string) (string, error) {
	n, err := r.uvarint(field)
	if err != nil {
		return "", err
	}
	if n > uint64(len(r.b)-r.off) {
		return "", fmt.Errorf("%s: length %d: %w", field, n, ErrTruncated)
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	if r.d != nil {
		return r.d.intern(b), nil
	}
	return string(b), nil
}

func appendUvarint(dst []byte, x uint64) []byte {
	for x >= 0x80 {
		dst = append(dst, byte(x)|0x80)
		x >>= 7
	}
	return append(dst, byte(x))
}

func appendVarint(dst []byte, x int64) []byte {
	return appendUvarint(dst, uint64(x<<1)^uint64(x>>63))
}

func appendString(dst []byte, s string) []byte {
	dst = appendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int { return uvarintLen(uint64(x<<1) ^ uint64(x>>63)) }

func stringLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

// hasFlat reports whether an entry of us is Flat: what makes an event
// version 2.
func hasFlat(us []Usage) bool {
	for i := range us {
		if us[i].Flat {
			return true
		}
	}
	return false
}
