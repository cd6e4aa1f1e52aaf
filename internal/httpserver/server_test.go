package httpserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// syncBuf is a log sink the server writes while the test reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const secret = "tok-5ecr3t-Zq8Xw2Lm9Vb4-never-logged"

// answerWithin bounds every exchange: far below the 30 s read timeout
// below, so a server that waits for more bytes fails instead of answering
// late.
const answerWithin = 5 * time.Second

// start serves a small API through New on a loopback port, logging at debug
// level into the returned buffer; failures are answered as
// "<status> <reason> <path>". reduce sets fasthttp's ReduceMemoryUsage,
// under which fasthttp reads the first byte of each request on its own.
func start(t *testing.T, maxLine, maxHdr int, reduce bool) (addr string, logs *syncBuf) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs = &syncBuf{}
	s := New(&fasthttp.Server{
		Handler:            func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok " + string(ctx.Path())) },
		ReadBufferSize:     4096,
		MaxRequestBodySize: 1024,
		ReadTimeout:        30 * time.Second,
		ReduceMemoryUsage:  reduce,
	}, Options{
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxRequestLine: maxLine,
		MaxHeaderBytes: maxHdr,
		OnFailure: func(ctx *fasthttp.RequestCtx, f Failure) {
			ctx.SetStatusCode(f.Status)
			ctx.SetBodyString(fmt.Sprintf("%d %s %s", f.Status, f.Reason, f.Path))
		},
	})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String(), logs
}

// exchange writes raw and reads one answer (nil if the connection closed
// without one) within answerWithin.
func exchange(t *testing.T, addr string, raw string) (*http.Response, string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(answerWithin))
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, "", err
	}
	br := bufio.NewReader(c)
	if _, err := br.Peek(1); err != nil {
		return nil, "", err // io.EOF: closed without a byte
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, "", err
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body), nil
}

// TestServeRefusesAtOnce: over a real socket, each broken request gets its
// answer (or the end of the connection) well before the read timeout, with
// the status, reason and path OnFailure is given; nothing logged quotes the
// request, and the log says why each connection ended.
func TestServeRefusesAtOnce(t *testing.T) {
	for _, reduce := range []bool{false, true} {
		t.Run(fmt.Sprintf("ReduceMemoryUsage=%v", reduce), func(t *testing.T) { testServeRefusesAtOnce(t, reduce) })
	}
}

func testServeRefusesAtOnce(t *testing.T, reduce bool) {
	addr, logs := start(t, 200, 1024, reduce)
	auth := "Authorization: Bearer " + secret + "\r\n"
	for _, c := range []struct {
		name, raw string
		want      string // the answer's body; "" for a connection closed without one
	}{
		{"bare LF", "GET /admin/x?k=" + secret + " HTTP/1.1\nHost: x\n" + strings.TrimSuffix(auth, "\r\n") + "\n\n",
			"400 " + reasonBareLF + " /admin/x"},
		{"TLS ClientHello", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + secret, ""},
		{"binary", "\x00\x01" + secret + "\r\n", "400 " + reasonNotHTTP + " "},
		{"long request line", "GET /admin/y?k=" + secret + strings.Repeat("a", 300) + " HTTP/1.1\r\nHost: x\r\n\r\n",
			"414 request line longer than 200 bytes /admin/y"},
		{"headers over the buffer", "GET /z HTTP/1.1\r\nHost: x\r\n" + auth + "X-Pad: " + strings.Repeat(secret, 200) + "\r\n\r\n",
			"431 " + reasonHeaders + " /z"},
		{"headers over MaxHeaderBytes", "GET /w HTTP/1.1\r\nHost: x\r\n" + auth + "X-Pad: " + strings.Repeat("p", 1024) + "\r\n\r\n",
			"431 " + reasonHeaders + " /w"},
		{"body over the limit", "POST /b HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 2000\r\n\r\n", "413 " + reasonBody + " /b"},
		{"malformed header", "GET /admin/h HTTP/1.1\r\nHost: x\r\n" + auth + "not a header " + secret + "\r\n\r\n",
			"400 " + reasonMalformed + " /admin/h"},
		{"well-formed", "GET /fine HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", "ok /fine"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			resp, body, err := exchange(t, addr, c.raw)
			switch {
			case c.want == "" && (resp != nil || !errors.Is(err, io.EOF)):
				t.Fatalf("want the connection closed without an answer; got %v %q %v", resp != nil, body, err)
			case c.want != "" && resp == nil:
				t.Fatalf("no answer within %v (after %v): %v", answerWithin, time.Since(start).Round(time.Millisecond), err)
			case c.want != "" && body != c.want:
				t.Fatalf("answer %q, want %q", body, c.want)
			}
		})
	}
	// The server's goroutines log each connection's end as it comes (a
	// refused one after lingering): wait for all of them.
	wants := []string{reasonBareLF, reasonTLS, reasonNotHTTP, "request line longer than 200 bytes", reasonBody, reasonMalformed}
	logged := func(out string) bool {
		for _, w := range wants {
			if !strings.Contains(out, w) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(answerWithin)
	for !logged(logs.String()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if strings.Contains(out, secret) || strings.Contains(out, "/admin") {
		t.Errorf("the log quotes a request:\n%s", out)
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "remote=127.0.0.1:") || !strings.Contains(out, "level=DEBUG") {
		t.Errorf("the log lacks the peer's address or the debug level:\n%s", out)
	}
}

// TestKeepAliveThroughTheGuard: requests with bodies and without, on one
// keep-alive connection, all answered: the guard follows the framing.
func TestKeepAliveThroughTheGuard(t *testing.T) {
	addr, _ := start(t, 0, 0, false)
	c := &fasthttp.Client{}
	for i := range 20 {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI(fmt.Sprintf("http://%s/r%d", addr, i))
		if i%2 == 1 {
			req.Header.SetMethod("POST")
			req.SetBodyString("a\n\nb\n\n" + strings.Repeat("\n", i))
		}
		if err := c.DoTimeout(req, resp, answerWithin); err != nil || string(resp.Body()) != fmt.Sprintf("ok /r%d", i) {
			t.Fatalf("request %d: %v %q", i, err, resp.Body())
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}

// TestLoggerNeverPrintsArguments: every message fasthttp logs, with a
// request's bytes in its arguments, comes out as a fixed message, the
// peer's address and a fixed cause.
func TestLoggerNeverPrintsArguments(t *testing.T) {
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3001}
	remote := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40000}
	leak := fmt.Errorf("error when reading request headers: %w: contents: %q", errBareLF, "GET /?user_key="+secret)
	for _, c := range []struct {
		name, format string
		args         []any
		want         []string
	}{
		{"connection error", "error when serving connection %q<->%q: %v", []any{local, remote, leak},
			[]string{"level=DEBUG", `msg="http: connection closed after an error"`, "remote=10.1.2.3:40000", `cause="` + reasonBareLF + `"`}},
		{"reset", "error when serving connection %q<->%q: %v", []any{local, remote, fmt.Errorf("read: %w", syscall.ECONNRESET)},
			[]string{`cause="connection reset by peer"`}},
		{"body too large", "error when serving connection %q<->%q: %v", []any{local, remote, fasthttp.ErrBodyTooLarge},
			[]string{`cause="` + reasonBody + `"`}},
		{"accept", "Permanent error when accepting new connections: %v", []any{errors.New("accept4: too many open files")},
			[]string{"level=WARN", `err="accept4: too many open files"`}},
		{"per-IP limit", "The number of connections from %s exceeds MaxConnsPerIP=%d", []any{net.IPv4(10, 9, 8, 7), 5},
			[]string{"level=WARN", "remote=10.9.8.7"}},
		{"request logger", "%.3f %s - %s", []any{1.5, "#0000000100000001 - 127.0.0.1:3001<->10.1.2.3:40000 - GET http://x/?k=" + secret, "cannot serve " + secret},
			[]string{`msg="http: server message withheld (it may quote a request)"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			logger{slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))}.Printf(c.format, c.args...)
			out := b.String()
			if strings.Contains(out, secret) || strings.Count(out, "\n") != 1 {
				t.Fatalf("log line %q", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("log line %q lacks %q", out, w)
				}
			}
		})
	}
	// Below the level, nothing is formatted at all.
	var b bytes.Buffer
	logger{slog.New(slog.NewTextHandler(&b, nil))}.Printf("error when serving connection %q<->%q: %v", local, remote, leak)
	if b.Len() != 0 {
		t.Errorf("logged below the level: %q", b.String())
	}
}

func TestDefaultFailureAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(&fasthttp.Server{Handler: func(*fasthttp.RequestCtx) {}}, Options{Logger: slog.New(slog.DiscardHandler)})
	go s.Serve(ln)
	defer s.Shutdown()
	resp, body, err := exchange(t, ln.Addr().String(), "GET /"+strings.Repeat("a", 5000)+" HTTP/1.1\r\n\r\n")
	if err != nil || resp.StatusCode != 414 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" ||
		body != "request line longer than 4094 bytes\n" {
		t.Fatalf("default answer to a long line over the default buffer: %v %q", err, body)
	}
}
