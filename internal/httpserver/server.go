package httpserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/valyala/fasthttp"
)

// Failure is a request the server could not read, described for an API to
// answer in its own format.
type Failure struct {
	// Status is 400 (malformed, or not complete within the read timeout),
	// 413 (body over the server's MaxRequestBodySize), 414 (request line
	// over Options.MaxRequestLine) or 431 (request line and headers over
	// the read buffer, or headers over Options.MaxHeaderBytes).
	Status int
	// Reason says what was wrong in fixed words: it never quotes the
	// request, so it may go to a log or a client alike.
	Reason string
	// Path is the start of the request's path (the first bytes of its
	// request line hold it), or nil if no request line was read. On a connection that pipelines
	// requests it may be a later request's: it decides the format of the
	// answer, nothing else. These are the client's bytes: route by them,
	// never log them. Valid until OnFailure returns.
	Path []byte
}

// Code is the machine-readable code of the JSON APIs for f: body_too_large
// (413), uri_too_long (414), header_too_large (431), else bad_request.
func (f Failure) Code() string {
	switch f.Status {
	case fasthttp.StatusRequestEntityTooLarge:
		return "body_too_large"
	case fasthttp.StatusRequestURITooLong:
		return "uri_too_long"
	case fasthttp.StatusRequestHeaderFieldsTooLarge:
		return "header_too_large"
	}
	return "bad_request"
}

// Reasons of Failures, and causes in log lines.
const (
	reasonMalformed = "malformed HTTP request"
	reasonBareLF    = "header block not ended by CRLF CRLF (bare LF line ends)"
	reasonNotHTTP   = "not an HTTP request"
	reasonTLS       = "TLS handshake on a plain HTTP port"
	reasonHeaders   = "request line and headers larger than the read buffer"
	reasonBody      = "request body too large"
	reasonTimeout   = "request not complete within the read timeout"
)

// classify turns an error of fasthttp's request reading into a status and
// a fixed reason.
func classify(err error) (status int, reason string) {
	var long *lineTooLongError
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &long):
		return 414, "request line longer than " + strconv.Itoa(long.limit) + " bytes"
	case errors.Is(err, errBareLF):
		return 400, reasonBareLF
	case errors.Is(err, errNotHTTP):
		return 400, reasonNotHTTP
	case errors.As(err, &small), errors.Is(err, errHeaders):
		return 431, reasonHeaders
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return 413, reasonBody
	case errors.As(err, &ne) && ne.Timeout():
		return 400, reasonTimeout
	}
	return 400, reasonMalformed
}

// failure describes err for OnFailure; ctx holds what fasthttp parsed.
func failure(ctx *fasthttp.RequestCtx, err error) Failure {
	f := Failure{}
	f.Status, f.Reason = classify(err)
	var long *lineTooLongError
	switch {
	case errors.As(err, &long):
		f.Path = targetPath(long.start)
	default:
		// fasthttp forgets the request line when the headers after it
		// fail (its RequestURI is then "/"); the guard kept its start.
		if c, ok := ctx.Conn().(*conn); ok {
			f.Path = c.g.path()
		}
	}
	return f
}

// cause names why a connection ended, in fixed words, for a log line.
func cause(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by peer"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed in the middle of a request"
	}
	_, reason := classify(err)
	return reason
}

// logger is the fasthttp.Logger of every server: fasthttp's messages quote
// requests (their bytes, URL and headers: credentials), so it prints only
// which message it is, the peer's address and a fixed cause, never the
// message's arguments.
type logger struct{ log *slog.Logger }

// Printf logs one fasthttp message without its arguments' text.
func (l logger) Printf(format string, args ...any) {
	msg, level, osErr := event(format)
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	for _, a := range args {
		if err, ok := a.(error); ok && errors.Is(err, errHandoff) {
			return // a connection moving to the long-line server: not an event
		}
	}
	attrs := make([]any, 0, 6)
	attrs = append(attrs, "component", "http")
	var remote string
	for _, a := range args {
		switch v := a.(type) {
		case net.Addr:
			remote = v.String() // "%q<->%q": the last address is the peer's
		case net.IP:
			remote = v.String()
		case error:
			if osErr {
				// Accepting failed: the error comes from the operating
				// system before any byte is read, and says why (too many
				// open files, ...).
				attrs = append(attrs, "err", v.Error())
			} else {
				attrs = append(attrs, "cause", cause(v))
			}
		}
	}
	if remote != "" {
		attrs = append(attrs, "remote", remote)
	}
	l.log.Log(context.Background(), level, msg, attrs...)
}

// event names a fasthttp message by its format string (a constant in
// fasthttp's code) and says how much it matters. osErr marks messages
// whose error argument comes from accept(2), not from a client.
func event(format string) (msg string, level slog.Level, osErr bool) {
	switch {
	case strings.HasPrefix(format, "error when serving connection"):
		return "http: connection closed after an error", slog.LevelDebug, false
	case strings.Contains(format, "accepting new connections"):
		return "http: accepting a connection failed", slog.LevelWarn, true
	case strings.Contains(format, "concurrent connections"):
		return "http: connection refused: concurrency limit reached", slog.LevelWarn, false
	case strings.Contains(format, "MaxConnsPerIP"):
		return "http: connection refused: too many connections from one address", slog.LevelWarn, false
	}
	return "http: server message withheld (it may quote a request)", slog.LevelDebug, false
}

// Options are what New adds to a fasthttp.Server.
type Options struct {
	// Logger receives the server's messages, none of which quotes a
	// request. Default slog.Default().
	Logger *slog.Logger
	// OnFailure answers a request the server could not read: it sets the
	// status, headers and body on ctx; the connection closes after the
	// answer. Default: the status with Failure.Reason as plain text.
	OnFailure func(ctx *fasthttp.RequestCtx, f Failure)
	// MaxRequestLine bounds the request line (method, target and version,
	// before its line end); a longer one is 414. Default, and at most, the
	// read buffer less two bytes, so that a request line fasthttp could not
	// buffer whole is always a 414, never a 431. Set it to the URL limit an
	// API documents.
	MaxRequestLine int
	// MaxHeaderBytes bounds the header block after the request line (its
	// lines and the blank line that ends it); a larger one is 431, as one
	// over the read buffer is. Set it when the read buffer is sized for a
	// long request line, so that the headers do not get that room too.
	// Default 0: only the read buffer bounds them.
	MaxHeaderBytes int
	// LongLines, if set, is a second server for request lines longer than
	// the first one's read buffer leaves room for (its ReadBufferSize less
	// MaxHeaderBytes and 2): a connection moves to it, for good, when it
	// sends such a line, so that only such connections ever get its larger
	// read buffer. New configures it as it does the first (Logger,
	// ErrorHandler, SecureErrorLogMessage) and sets its ReduceMemoryUsage
	// (an idle connection on it holds no buffer); its other settings,
	// Handler included, are the caller's, normally those of the first.
	// MaxRequestLine may then reach its ReadBufferSize less MaxHeaderBytes
	// and 2. A request line that does not end within the read where it
	// starts is held back (in memory as large as what the client sent)
	// until it ends, so that a line is always read by the server that can.
	LongLines *fasthttp.Server
}

// Server serves a fasthttp.Server through the guard. Use it instead of the
// fasthttp.Server it was made from.
type Server struct {
	srv     *fasthttp.Server
	long    *fasthttp.Server // nil without Options.LongLines
	ll      *longLines
	maxLine int
	maxHdr  int
	log     *slog.Logger
}

// New returns srv, configured by its caller (handler, sizes, timeouts),
// made ready to serve with this package's guarantees: it sets srv.Logger,
// srv.ErrorHandler and srv.SecureErrorLogMessage, overwriting them.
func New(srv *fasthttp.Server, o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	onFailure := o.OnFailure
	if onFailure == nil {
		onFailure = plainFailure
	}
	maxHdr := max(o.MaxHeaderBytes, 0)
	buf := readBuffer(srv)
	lineCap := buf - 2
	var ll *longLines
	if o.LongLines != nil {
		ll = &longLines{
			shortLine: max(buf-2-maxHdr, 1),
			shortPass: buf - 2,
			longPass:  readBuffer(o.LongLines) - 2,
		}
		lineCap = readBuffer(o.LongLines) - 2 - maxHdr
		o.LongLines.ReduceMemoryUsage = true
	}
	if o.MaxRequestLine <= 0 || o.MaxRequestLine > lineCap {
		o.MaxRequestLine = lineCap
	}
	for _, s := range []*fasthttp.Server{srv, o.LongLines} {
		if s == nil {
			continue
		}
		s.Logger = logger{o.Logger}
		s.SecureErrorLogMessage = true
		s.ErrorHandler = func(ctx *fasthttp.RequestCtx, err error) {
			ctx.Response.Reset()
			if errors.Is(err, errHandoff) {
				return // nothing is written: the connection goes to the other server
			}
			onFailure(ctx, failure(ctx, err))
		}
	}
	return &Server{srv: srv, long: o.LongLines, ll: ll, maxLine: o.MaxRequestLine, maxHdr: maxHdr, log: o.Logger}
}

// readBuffer is s's read buffer size, fasthttp's default when unset.
func readBuffer(s *fasthttp.Server) int {
	if s.ReadBufferSize <= 0 {
		return 4096
	}
	return s.ReadBufferSize
}

// plainFailure is the default OnFailure.
func plainFailure(ctx *fasthttp.RequestCtx, f Failure) {
	ctx.SetStatusCode(f.Status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(f.Reason + "\n")
}

// Serve answers connections from ln until Shutdown, each through the guard.
// With Options.LongLines it serves that server too. A Server serves one
// listener.
func (s *Server) Serve(ln net.Listener) error {
	l := &listener{Listener: ln, maxLine: s.maxLine, maxHdr: s.maxHdr, log: s.log}
	var longDone chan error
	if s.ll != nil {
		s.ll.ln = newHandoffListener(ln.Addr())
		l.ll = s.ll
		longDone = make(chan error, 1)
		go func() { longDone <- s.long.Serve(s.ll.ln) }()
	}
	err := s.srv.Serve(l)
	if longDone != nil {
		s.ll.ln.Close()
		if lerr := <-longDone; err == nil && lerr != nil && !errors.Is(lerr, net.ErrClosed) {
			err = lerr
		}
	}
	return err
}

// Shutdown stops accepting and waits for open connections to go idle and
// close.
func (s *Server) Shutdown() error { return s.ShutdownWithContext(context.Background()) }

// ShutdownWithContext is Shutdown bounded by ctx.
func (s *Server) ShutdownWithContext(ctx context.Context) error {
	err := s.srv.ShutdownWithContext(ctx)
	if s.long != nil {
		if lerr := s.long.ShutdownWithContext(ctx); err == nil {
			err = lerr
		}
	}
	return err
}
