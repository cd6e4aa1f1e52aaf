package httpserver

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// The guard's refusals. fasthttp wraps the error a read returns into the
// one it hands the ErrorHandler (with %w), which is how classify knows them.
var (
	errBareLF  = errors.New("httpserver: header block ends in a bare LF")
	errNotHTTP = errors.New("httpserver: not an HTTP request line")
	errTLS     = errors.New("httpserver: TLS record on a plain HTTP port")
	errHeaders = errors.New("httpserver: header block over the limit")
)

// lineTooLongError refuses a request line over the limit. It keeps the
// line's first bytes so that the failure can still be routed by path;
// Error never prints them.
type lineTooLongError struct {
	limit int
	start []byte // the request line's first bytes: the client's, never log them
}

func (e *lineTooLongError) Error() string {
	return "httpserver: request line longer than " + strconv.Itoa(e.limit) + " bytes"
}

// targetPath returns the path of the request target in the start of a
// request line (possibly cut short), or nil.
func targetPath(line []byte) []byte {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return nil
	}
	t := line[sp+1:]
	if i := bytes.IndexAny(t, "? "); i >= 0 {
		t = t[:i]
	}
	if len(t) == 0 || t[0] != '/' {
		return nil
	}
	return t
}

// Where the guard stands in the client's byte stream.
const (
	stStart  uint8 = iota // between requests: blank lines are skipped, as fasthttp does
	stLine                // in a request line
	stHeader              // in a header block
	stBody                // in a Content-Length body
	stPass                // framing the guard does not follow: no more checks
)

const (
	// tlsHandshake is the first byte of a TLS handshake record.
	tlsHandshake = 0x16
	// keepLen is how much of each line the guard keeps: room for a
	// Content-Length header with any value fasthttp accepts, and for the
	// start of a request line's path.
	keepLen = 64
)

// guard follows one connection's bytes from the client with fasthttp's
// request framing (see the package doc) and decides when to refuse. Its
// state is a few fixed-size fields: scanning allocates nothing.
type guard struct {
	maxLine  int
	maxHdr   int // bound of a header block, 0 for none
	hdrLen   int // bytes of this request's header block so far
	state    uint8
	lastCR   bool  // the last byte of the current line so far is CR
	prevBare bool  // the previous line of this request ended in a bare LF
	pass     bool  // this request names a framing the guard does not follow
	clSeen   bool  // this request has a Content-Length
	lineLen  int   // bytes of the current line before its LF, CR included
	cl       int64 // this request's Content-Length
	body     int64 // body bytes still to come
	keepN    int
	keep     [keepLen]byte // the current line's first bytes
	reqN     int
	req      [keepLen]byte // the last request line's first bytes

	// Positions in the client's byte stream, for the long-line handoff.
	pos       int64  // bytes scanned before the current scan
	lineStart int64  // stream offset of the current request line's first byte
	lines     uint64 // request lines ended so far
	longFrom  int    // request lines longer than this set longStart; 0: none
	longStart int64  // stream offset of the first such line not yet handed over; -1: none
}

// path returns the path of the last request line the guard read (possibly
// cut short), or nil. On a connection that pipelines requests it may belong
// to a later request than the one fasthttp is reading.
func (g *guard) path() []byte { return targetPath(g.req[:g.reqN]) }

// scan follows p, the next bytes read from the client. It returns how many
// of them fasthttp may read and, when the connection is to be refused, why:
// fasthttp gets the bytes before the point of refusal, then the error.
func (g *guard) scan(p []byte) (int, error) {
	k, err := g.scanAt(p)
	if err == nil {
		g.pos += int64(len(p))
	}
	return k, err
}

// scanAt is scan without the stream position's update.
func (g *guard) scanAt(p []byte) (int, error) {
	for i := 0; i < len(p); {
		switch g.state {
		case stPass:
			return len(p), nil
		case stBody:
			n := int64(len(p) - i)
			if n < g.body {
				g.body -= n
				return len(p), nil
			}
			i += int(g.body)
			g.body, g.state = 0, stStart
		case stStart:
			switch c := p[i]; {
			case c == '\r' || c == '\n':
				i++
				continue
			case c == tlsHandshake:
				return i, errTLS
			case !isTokenByte(c):
				// Not a method. fasthttp would wait for a line end that
				// binary data may never contain.
				return i, errNotHTTP
			}
			g.state = stLine
			g.lineStart = g.pos + int64(i)
			g.lineLen, g.keepN, g.lastCR, g.prevBare = 0, 0, false, false
		default: // stLine, stHeader
			seg := p[i:]
			lf := bytes.IndexByte(seg, '\n')
			if lf >= 0 {
				seg = seg[:lf]
			}
			if g.keepN < keepLen {
				g.keepN += copy(g.keep[g.keepN:], seg)
			}
			if len(seg) > 0 {
				g.lastCR = seg[len(seg)-1] == '\r'
			}
			g.lineLen += len(seg)
			if g.state == stLine && g.lineLen > g.maxLine {
				start := append([]byte(nil), g.keep[:g.keepN]...)
				return i + len(seg) - (g.lineLen - g.maxLine), &lineTooLongError{limit: g.maxLine, start: start}
			}
			if g.state == stHeader && g.maxHdr > 0 {
				// The line's bytes and its LF count; fasthttp gets the
				// block up to the limit, then the refusal.
				n := len(seg)
				if lf >= 0 {
					n++
				}
				if g.hdrLen+n > g.maxHdr {
					return i + g.maxHdr - g.hdrLen, errHeaders
				}
				g.hdrLen += n
			}
			if lf < 0 {
				return len(p), nil
			}
			i += lf + 1
			if err := g.endLine(); err != nil {
				return i, err
			}
		}
	}
	return len(p), nil
}

// endLine handles the LF that ends the current line.
func (g *guard) endLine() error {
	bare := !g.lastCR
	blank := g.lineLen == 0 || (g.lineLen == 1 && g.lastCR)
	switch {
	case g.state == stLine:
		g.state = stHeader
		g.lines++
		if g.longFrom > 0 && g.lineLen > g.longFrom && g.longStart < 0 {
			g.longStart = g.lineStart
		}
		g.hdrLen = 0
		g.prevBare = bare
		g.reqN = copy(g.req[:], g.keep[:g.keepN])
	case blank:
		// The end of the header block. fasthttp ends a block only where
		// the buffered bytes also hold a CRLFCRLF; this one is refused
		// rather than left to wait for one.
		if bare || g.prevBare {
			return errBareLF
		}
		switch {
		case g.pass:
			g.state = stPass
		case g.cl > 0:
			g.state, g.body = stBody, g.cl
		default:
			g.state = stStart
		}
		g.pass, g.clSeen, g.cl = false, false, 0
	default:
		g.header()
		g.prevBare = bare
	}
	g.lineLen, g.keepN, g.lastCR = 0, 0, false
	return nil
}

// header looks at a header line for what decides where the body ends.
func (g *guard) header() {
	line := g.keep[:g.keepN]
	whole := g.lineLen <= keepLen
	switch {
	case line[0] == ' ' || line[0] == '\t':
		// A folded line continues the previous header, which may have
		// been Content-Length.
		g.pass = true
	case hasPrefixFold(line, "content-length"):
		v, ok := headerValue(line[len("content-length"):])
		if !ok {
			return // another header whose name starts the same way
		}
		n, ok := parseLength(v)
		if !whole || !ok || g.clSeen {
			// fasthttp refuses what it cannot parse and closes; this is
			// only for the guard not to lose its place meanwhile.
			g.pass = true
			return
		}
		g.clSeen, g.cl = true, n
	case hasPrefixFold(line, "transfer-encoding"), hasPrefixFold(line, "expect"):
		// A chunked body, or one fasthttp reads only after 100 Continue
		// (or never): the guard does not follow them.
		g.pass = true
	}
}

// headerValue returns the value after a header name: rest must be spaces,
// a colon, then the value; ok is false if rest continues the name instead.
func headerValue(rest []byte) (v []byte, ok bool) {
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	if len(rest) == 0 || rest[0] != ':' {
		return nil, false
	}
	v = rest[1:]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t' || v[len(v)-1] == '\r') {
		v = v[:len(v)-1]
	}
	return v, true
}

// parseLength parses a Content-Length of at most 18 digits (fasthttp takes
// only digits, and nothing near 2^63 is a body it would read).
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// hasPrefixFold reports whether b starts with the lower-case ASCII prefix,
// ignoring case.
func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// isTokenByte reports whether c may appear in a method (RFC 9110 tchar).
func isTokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// conn is a client connection behind the guard.
type conn struct {
	net.Conn
	g   guard
	err error // the refusal every read returns once the guard refused
	log *slog.Logger

	// With long lines (see longLines), request lines that do not end within
	// one read are withheld from fasthttp until they do.
	ll      *longLines
	long    bool   // served by the long-line server
	held    []byte // a withheld request line, from its first byte
	heldAt  uint64 // guard.lines when the held line began
	pend    []byte // bytes the guard scanned, for fasthttp's next reads
	toLong  bool   // held starts with a line for the long-line server: hand over at the next read
	after   error  // the refusal the long-line server reads after held
	handoff bool   // the short server is to let go of the connection

	lazy   bool // a plain TCP connection: deadlines armed lazily (lazyDeadline)
	rd, wd lazyDeadline
}

// Read reads from the client and hands fasthttp what the guard lets
// through. After a refusal it returns the refusal: fasthttp answers it
// through the ErrorHandler and closes the connection. A TLS record reads as
// the end of the stream instead, so that fasthttp closes without writing an
// HTTP answer to a TLS client.
func (c *conn) Read(p []byte) (int, error) {
	if c.ll != nil {
		return c.readLong(p)
	}
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.readConn(p)
	if n == 0 {
		return n, err
	}
	k, refused := c.g.scan(p[:n])
	if refused == nil {
		return n, err
	}
	return c.refuse(k, refused)
}

// refuse records a refusal after k bytes may still go to fasthttp and
// returns what the current read returns.
func (c *conn) refuse(k int, refused error) (int, error) {
	c.err = c.refusal(refused)
	if k == 0 && refused != errTLS {
		// fasthttp answers a request it has begun to read; an error before
		// its first byte closes the connection without an answer. Its
		// first read of a request may ask for one byte (ReduceMemoryUsage),
		// so the refused byte goes first and the refusal with the next read.
		k = 1
	}
	if k > 0 {
		return k, nil
	}
	return 0, c.err
}

// refusal is the error reads return after the guard refused: the refusal,
// or for a TLS record the end of the stream (logged here).
func (c *conn) refusal(refused error) error {
	if refused == errTLS {
		c.log.Debug("http: connection closed without an answer", "component", "http", "cause", reasonTLS, "remote", c.RemoteAddr().String())
		return io.EOF
	}
	return refused
}

// Write writes to the client, except while the short server lets go of a
// connection handed to the long-line server: what it answers then (to the
// read error that made it let go) is not for the client.
func (c *conn) Write(p []byte) (int, error) {
	if c.handoff {
		return len(p), nil
	}
	return c.writeConn(p)
}

// Lingering after a refusal: how long and how much.
const (
	lingerTime  = 50 * time.Millisecond
	lingerBytes = 64 << 10
)

// Close closes the connection. After a refusal it first reads and discards
// what the client already sent (at most lingerBytes, for at most
// lingerTime): closing a socket with unread bytes resets the connection,
// and a reset can reach the client before the answer written just before
// it (or, for a TLS client, turns a clean end of stream into an error).
// A connection the short server lets go of goes to the long-line server
// instead.
func (c *conn) Close() error {
	if c.handoff && c.ll.handOver(c) {
		return nil
	}
	if c.err != nil {
		var buf [4096]byte
		if c.Conn.SetReadDeadline(time.Now().Add(lingerTime)) == nil {
			for n := 0; n < lingerBytes; {
				k, err := c.Conn.Read(buf[:])
				n += k
				if err != nil {
					break
				}
			}
		}
	}
	return c.Conn.Close()
}

// listener hands fasthttp guarded connections.
type listener struct {
	net.Listener
	maxLine int
	maxHdr  int
	log     *slog.Logger
	ll      *longLines // nil without a long-line server
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g := guard{maxLine: l.maxLine, maxHdr: l.maxHdr, longStart: -1}
	if l.ll != nil {
		g.longFrom = l.ll.shortLine
	}
	_, lazy := c.(*net.TCPConn)
	return &conn{Conn: c, g: g, log: l.log, ll: l.ll, lazy: lazy}, nil
}
