package httpserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Sizes of the long-line test server: the short server reads lines up to
// 512-2-128 = 382 bytes, the long one up to 8192-2-128 = 8062.
const (
	testShortBuf  = 512
	testLongBuf   = 8192
	testMaxHdr    = 128
	testShortLine = testShortBuf - 2 - testMaxHdr
	testMaxLine   = testLongBuf - 2 - testMaxHdr
)

// startLong serves a short and a long-line server whose handlers say which
// answered: "short|long <request URI length> <body length>".
func startLong(t *testing.T) (addr string, s *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handler := func(name string) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			ctx.SetBodyString(fmt.Sprintf("%s %d %d", name, len(ctx.RequestURI()), len(ctx.PostBody())))
		}
	}
	s = New(&fasthttp.Server{Handler: handler("short"), ReadBufferSize: testShortBuf, ReadTimeout: 30 * time.Second},
		Options{
			Logger:         slog.New(slog.DiscardHandler),
			MaxRequestLine: 1 << 20, // capped at testMaxLine
			MaxHeaderBytes: testMaxHdr,
			OnFailure: func(ctx *fasthttp.RequestCtx, f Failure) {
				ctx.SetStatusCode(f.Status)
				ctx.SetBodyString(fmt.Sprintf("%d %s %s", f.Status, f.Reason, f.Path))
			},
			LongLines: &fasthttp.Server{Handler: handler("long"), ReadBufferSize: testLongBuf, ReadTimeout: 30 * time.Second},
		})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), answerWithin)
		defer cancel()
		if err := s.ShutdownWithContext(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String(), s
}

// get is a GET request of a target of n bytes ("/" and n-1 letters).
func get(n int) string {
	return "GET /" + strings.Repeat("a", n-1) + " HTTP/1.1\r\nHost: x\r\n\r\n"
}

// TestLongLines: each request is answered by the server whose buffer can
// read its line, whatever the reads it arrives in; a connection stays on
// the long-line server once there; over the limit is 414 with the path.
func TestLongLines(t *testing.T) {
	addr, _ := startLong(t)
	// The request line of get(n) is n + len("GET  HTTP/1.1") bytes, plus CR.
	lineOf := func(line int) int { return line - len("GET  HTTP/1.1\r") }
	short, long := lineOf(testShortLine), lineOf(testShortLine+1)
	for _, c := range []struct {
		name   string
		writes []string // sent one after another, a little apart
		want   []string // the answers' bodies, in order
	}{
		{"short", []string{get(10)}, []string{"short 10 0"}},
		{"at the short limit", []string{get(short)}, []string{fmt.Sprintf("short %d 0", short)}},
		{"one byte over", []string{get(long)}, []string{fmt.Sprintf("long %d 0", long)}},
		{"long, then short on the same connection", []string{get(3000), get(10)}, []string{"long 3000 0", "long 10 0"}},
		{"short line in pieces", []string{"GET /ab", "cd HTTP/1.1\r\nHo", "st: x\r\n\r\n"}, []string{"short 5 0"}},
		{"long line in pieces", splitEvery(get(2000), 300), []string{"long 2000 0"}},
		{"in 7-byte pieces", splitEvery(get(450), 7), []string{"long 450 0"}},
		{"pipelined short, long, short", []string{get(20) + get(1500) + get(30)}, []string{"short 20 0", "long 1500 0", "long 30 0"}},
		{"pipelined with a body", []string{"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 600\r\n\r\n" + strings.Repeat("b", 600) + get(700)},
			[]string{"short 2 600", "long 700 0"}},
		{"at the limit", []string{get(lineOf(testMaxLine))}, []string{fmt.Sprintf("long %d 0", lineOf(testMaxLine))}},
		{"over the limit", []string{"GET /over?" + strings.Repeat("x", testMaxLine) + " HTTP/1.1\r\nHost: x\r\n\r\n"},
			[]string{fmt.Sprintf("414 request line longer than %d bytes /over", testMaxLine)}},
		{"bare LF after a long line", []string{get(1000), "GET / HTTP/1.1\nHost: x\n\n"}, []string{"long 1000 0", "400 " + reasonBareLF + " /"}},
		{"headers over the bound after a long line", []string{get(1000) + "GET /h HTTP/1.1\r\nX: " + strings.Repeat("h", testMaxHdr) + "\r\n\r\n"},
			[]string{"long 1000 0", "431 " + reasonHeaders + " /h"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(answerWithin))
			br := bufio.NewReader(conn)
			got := []string{}
			for i, w := range c.writes {
				if _, err := io.WriteString(conn, w); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Millisecond)
				// Writes that are whole requests get their answer before the
				// next write; pieces of one request do not.
				if strings.HasSuffix(w, "\r\n\r\n") || strings.HasSuffix(w, "\n\n") || i == len(c.writes)-1 {
					for len(got) < len(c.want) {
						resp, err := http.ReadResponse(br, nil)
						if err != nil {
							t.Fatalf("answer %d: %v (so far %q)", len(got), err, got)
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						got = append(got, string(body))
						if br.Buffered() == 0 && i < len(c.writes)-1 {
							break
						}
					}
				}
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Fatalf("answers %q, want %q", got, c.want)
			}
		})
	}
}

func splitEvery(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// TestLongLinesTLS: a TLS ClientHello is still closed without an answer,
// and a connection that stops in the middle of a long line gets nothing
// written back.
func TestLongLinesClose(t *testing.T) {
	addr, _ := startLong(t)
	resp, _, err := exchange(t, addr, "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"+strings.Repeat("r", 300))
	if resp != nil || err != io.EOF {
		t.Fatalf("ClientHello: answer %v, err %v", resp != nil, err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET /"+strings.Repeat("a", 2000))
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(answerWithin))
	b, _ := io.ReadAll(conn)
	conn.Close()
	if strings.Contains(string(b), "long") || strings.Contains(string(b), "short") {
		t.Fatalf("an unfinished request was served: %q", b)
	}
}

// TestLongLinesShutdown: Shutdown returns with connections idle on both
// servers.
func TestLongLinesShutdown(t *testing.T) {
	addr, s := startLong(t)
	var conns []net.Conn
	for _, req := range []string{get(10), get(2000)} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		conn.SetDeadline(time.Now().Add(answerWithin))
		io.WriteString(conn, req)
		if _, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), answerWithin)
	defer cancel()
	start := time.Now()
	if err := s.ShutdownWithContext(ctx); err != nil {
		t.Fatalf("shutdown with idle connections: %v after %v", err, time.Since(start))
	}
	for _, c := range conns {
		c.Close()
	}
}

// chunkConn is a net.Conn whose reads return the next of its chunks.
type chunkConn struct {
	net.Conn
	chunks [][]byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *chunkConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }

// TestLongLinesHandOverWhole: whatever the reads a stream of short and
// long requests arrives in, the bytes the two servers are handed are the
// stream, in order; the short server is handed no request line longer
// than it reads, and the move happens at the first long line's first byte.
func TestLongLinesHandOverWhole(t *testing.T) {
	stream := get(20) + "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nab\ncd" + get(40) + get(600) + get(10) + get(2000)
	firstLong := strings.Index(stream, "GET /"+strings.Repeat("a", 599))
	for _, chunk := range []int{1, 2, 3, 7, 64, 100, 511, 4096, len(stream)} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			ll := &longLines{shortLine: testShortLine, shortPass: testShortBuf - 2, longPass: testLongBuf - 2, ln: newHandoffListener(nil)}
			c := &conn{Conn: &chunkConn{chunks: splitBytes(stream, chunk)}, ll: ll, log: slog.New(slog.DiscardHandler),
				g: guard{maxLine: testMaxLine, maxHdr: testMaxHdr, longStart: -1, longFrom: testShortLine}}
			var short, long []byte
			buf := make([]byte, testShortBuf)
			for {
				n, err := c.Read(buf)
				if c.long {
					long = append(long, buf[:n]...)
				} else {
					short = append(short, buf[:n]...)
				}
				if err == errHandoff {
					if c.long {
						t.Fatal("handed over twice")
					}
					// What Close does, without the listener.
					c.handoff, c.toLong, c.long, c.err, c.after = false, false, true, c.after, nil
					c.pend, c.held = c.held, nil
					c.g.longFrom, c.g.longStart = 0, -1
					buf = make([]byte, testLongBuf)
					continue
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if string(short)+string(long) != stream {
				t.Fatalf("handed %q + %q, want %q", short, long, stream)
			}
			if len(short) != firstLong {
				t.Fatalf("moved after %d bytes, want %d", len(short), firstLong)
			}
		})
	}
}

func splitBytes(s string, n int) [][]byte {
	var out [][]byte
	for _, p := range splitEvery(s, n) {
		out = append(out, []byte(p))
	}
	return out
}
