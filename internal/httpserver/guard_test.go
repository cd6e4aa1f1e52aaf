package httpserver

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// feed runs the guard over stream in the given chunks, as successive reads
// would, and returns how many bytes it let through and why it refused.
func feed(maxLine, maxHdr int, chunks [][]byte) (int, error) {
	g := guard{maxLine: maxLine, maxHdr: maxHdr}
	total := 0
	for _, c := range chunks {
		n, err := g.scan(c)
		total += n
		if err != nil {
			return total, err
		}
		if n != len(c) {
			return total, errors.New("scan kept bytes back without refusing")
		}
	}
	return total, nil
}

// splits returns stream whole, cut at every position in two, and byte by
// byte: the guard must decide the same whatever the reads.
func splits(stream []byte) [][][]byte {
	out := [][][]byte{{stream}}
	for i := 1; i < len(stream); i++ {
		out = append(out, [][]byte{stream[:i], stream[i:]})
	}
	var bytewise [][]byte
	for i := range stream {
		bytewise = append(bytewise, stream[i:i+1])
	}
	return append(out, bytewise)
}

// errKind names a refusal for comparisons.
func errKind(err error) string {
	var long *lineTooLongError
	switch {
	case err == nil:
		return "none"
	case errors.As(err, &long):
		return "long line"
	case errors.Is(err, errBareLF):
		return "bare LF"
	case errors.Is(err, errTLS):
		return "TLS"
	case errors.Is(err, errNotHTTP):
		return "not HTTP"
	case errors.Is(err, errHeaders):
		return "headers"
	}
	return err.Error()
}

func TestGuard(t *testing.T) {
	const get = "GET /status HTTP/1.1\r\nHost: x\r\n\r\n"
	post := func(headers, body string) string {
		return "POST /transactions.xml HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n" + body
	}
	for _, c := range []struct {
		name    string
		stream  string
		maxLine int    // 0: 1024
		maxHdr  int    // 0: none
		refuse  string // errKind of the refusal
		upTo    string // the prefix of stream let through before a refusal ("" with no refusal: all)
	}{
		{name: "one request", stream: get},
		{name: "pipelined requests", stream: get + get + get},
		{name: "blank lines between requests", stream: "\r\n\r\n" + get + "\r\n" + get},
		{name: "bare LF inside a block ended by CRLFCRLF", stream: "GET /status HTTP/1.1\nHost: x\r\n\r\n" + get},
		{name: "body with bare LFs, then a request", stream: post("Content-Length: 8\r\n", "a\n\nb\n\nc\n") + get},
		{name: "body in pieces", stream: post("Content-Length: 300\r\n", strings.Repeat("\n", 300)) + get},
		{name: "zero Content-Length", stream: post("Content-Length: 0\r\n", "") + get},
		{name: "Content-Length with a space before the colon", stream: post("content-length : 3\r\n", "\n\n\n") + get},
		{name: "Content-Length with spaces around the value", stream: post("CONTENT-LENGTH:   3  \r\n", "\n\n\n") + get},

		{name: "bare LF request", stream: "GET /status HTTP/1.1\nHost: x\n\n", refuse: "bare LF", upTo: "GET /status HTTP/1.1\nHost: x\n\n"},
		{name: "bare LF request without headers", stream: "GET / HTTP/1.0\n\n", refuse: "bare LF", upTo: "GET / HTTP/1.0\n\n"},
		{name: "bare LF blank line after CRLF lines", stream: "GET / HTTP/1.1\r\nHost: x\r\n\n" + get, refuse: "bare LF", upTo: "GET / HTTP/1.1\r\nHost: x\r\n\n"},
		{name: "CRLF blank line after a bare LF line", stream: "GET / HTTP/1.1\r\nHost: x\n\r\n" + get, refuse: "bare LF", upTo: "GET / HTTP/1.1\r\nHost: x\n\r\n"},
		{name: "bare LF request after a good one", stream: get + "GET / HTTP/1.1\nHost: x\n\nGET", refuse: "bare LF", upTo: get + "GET / HTTP/1.1\nHost: x\n\n"},
		{name: "bare LF request after a body", stream: post("Content-Length: 2\r\n", "\n\n") + "GET / HTTP/1.1\nHost: x\n\n",
			refuse: "bare LF", upTo: post("Content-Length: 2\r\n", "\n\n") + "GET / HTTP/1.1\nHost: x\n\n"},
		{name: "a longer header name is not Content-Length", stream: post("Content-Lengthy: 2\r\n", "a\n\n"),
			refuse: "bare LF", upTo: post("Content-Lengthy: 2\r\n", "a\n\n")},

		{name: "TLS ClientHello", stream: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", refuse: "TLS", upTo: ""},
		{name: "TLS after a request", stream: get + "\x16\x03\x01", refuse: "TLS", upTo: get},
		{name: "binary", stream: "\x00\x01\x02GET / HTTP/1.1\r\n\r\n", refuse: "not HTTP", upTo: ""},
		{name: "HTTP/2 preface is a request line to refuse later", stream: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},

		{name: "request line at the limit", stream: "GET /" + strings.Repeat("a", 21) + " HTTP/1.1\r\n\r\n", maxLine: 36},
		{name: "request line over the limit", stream: "GET /" + strings.Repeat("a", 40) + " HTTP/1.1\r\n\r\n", maxLine: 36,
			refuse: "long line", upTo: "GET /" + strings.Repeat("a", 31)},
		{name: "header lines are not bounded by the request line limit", stream: "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 100) + "\r\n\r\n", maxLine: 36},
		// The header block counts its lines, their line ends and the blank
		// line, not the request line; each request's block on its own.
		{name: "header block at the limit", stream: "GET /" + strings.Repeat("a", 50) + " HTTP/1.1\r\nHost: x\r\nX: 12\r\n\r\n" + get, maxHdr: 18},
		{name: "header block over the limit", stream: "GET / HTTP/1.1\r\nHost: x\r\nX: 123\r\n\r\n", maxHdr: 18,
			refuse: "headers", upTo: "GET / HTTP/1.1\r\nHost: x\r\nX: 123\r\n\r"},
		{name: "long header line", stream: "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 100) + "\r\n\r\n", maxHdr: 18,
			refuse: "headers", upTo: "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 15)},
		{name: "a body does not count as headers", stream: post("Content-Length: 40\r\n", strings.Repeat("b", 40)) + get, maxHdr: 40},

		// Framings the guard does not follow: it lets everything through.
		{name: "chunked", stream: post("Transfer-Encoding: chunked\r\n", "3\r\na\n\n\r\n0\r\n\r\n") + "GET / HTTP/1.1\nHost: x\n\n"},
		{name: "Expect 100-continue", stream: post("Expect: 100-continue\r\nContent-Length: 2\r\n", "") + "GET / HTTP/1.1\n\n"},
		{name: "duplicate Content-Length", stream: post("Content-Length: 2\r\nContent-Length: 3\r\n", "\n\n\n") + "GET / HTTP/1.1\n\n"},
		{name: "folded header", stream: post("X: a\r\n 5\r\n", "") + "GET / HTTP/1.1\n\n"},
		{name: "unparsable Content-Length", stream: post("Content-Length: -1\r\n", "") + "GET / HTTP/1.1\n\n"},
		{name: "Content-Length cut by the kept prefix", stream: post("Content-Length:"+strings.Repeat(" ", 60)+"2\r\n", "\n\n") + "GET / HTTP/1.1\n\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			maxLine := c.maxLine
			if maxLine == 0 {
				maxLine = 1024
			}
			want, wantN := c.refuse, len(c.upTo)
			if want == "" {
				want, wantN = "none", len(c.stream)
			}
			for _, chunks := range splits([]byte(c.stream)) {
				n, err := feed(maxLine, c.maxHdr, chunks)
				if errKind(err) != want || n != wantN {
					t.Fatalf("in %d reads: let %d bytes through, refusal %q; want %d, %q", len(chunks), n, errKind(err), wantN, want)
				}
			}
		})
	}
}

func TestLineTooLongKeepsThePath(t *testing.T) {
	g := guard{maxLine: 100}
	_, err := g.scan([]byte("GET /admin/api/v1/config?x=" + strings.Repeat("a", 200)))
	var long *lineTooLongError
	if !errors.As(err, &long) {
		t.Fatalf("scan: %v", err)
	}
	if p := targetPath(long.start); string(p) != "/admin/api/v1/config" {
		t.Errorf("path %q", p)
	}
	if strings.Contains(long.Error(), "admin") {
		t.Errorf("the error quotes the request: %s", long.Error())
	}
	g = guard{maxLine: 1000}
	if _, err := g.scan([]byte("GET /admin/api/v1/services/" + strings.Repeat("s", 80) + " HTTP/1.1\r\nBad\n\n")); err == nil {
		t.Fatal("no refusal")
	}
	if p := g.path(); string(p) != "/admin/api/v1/services/"+strings.Repeat("s", keepLen-len("GET /admin/api/v1/services/")) {
		t.Errorf("path of the last request line: %q", p)
	}
}

// wellFormed builds a stream of well-formed requests from fuzz input:
// methods, paths, headers and Content-Length bodies of arbitrary bytes.
func wellFormed(data []byte) []byte {
	var b bytes.Buffer
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		c := data[0]
		data = data[1:]
		return c
	}
	methods := []string{"GET", "POST", "PUT", "DELETE", "HEAD"}
	for len(data) > 0 {
		if next()%4 == 0 {
			b.WriteString("\r\n") // tolerated before a request
		}
		b.WriteString(methods[int(next())%len(methods)] + " /p" + strconv.Itoa(int(next())) + "?q=" + strconv.Itoa(int(next())) + " HTTP/1.1\r\n")
		for range next() % 4 {
			b.WriteString("X-H" + strconv.Itoa(int(next())) + ": v\r\n")
		}
		size := int(next())
		n := min(len(data), size)
		body := data[:n]
		data = data[n:]
		if len(body) > 0 || next()%2 == 0 {
			b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
		}
		b.WriteString("\r\n")
		b.Write(body)
	}
	return b.Bytes()
}

// FuzzGuard: on any bytes, the guard's decision does not depend on how the
// stream is cut into reads, and it never lets through more than it got; on
// any stream of well-formed requests (bodies of arbitrary bytes, LFs
// included) it refuses nothing.
func FuzzGuard(f *testing.F) {
	f.Add([]byte("GET /status HTTP/1.1\nHost: x\n\n"), uint8(7))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\n\n\n\nGET / HTTP/1.1\r\n\r\n"), uint8(3))
	f.Add([]byte("\x16\x03\x01\x00"), uint8(1))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), uint8(200))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		whole, wholeErr := feed(64, 96, [][]byte{data})
		var chunks [][]byte
		step := int(cut%16) + 1
		for i := 0; i < len(data); i += step {
			chunks = append(chunks, data[i:min(len(data), i+step)])
		}
		n, err := feed(64, 96, chunks)
		if n != whole || errKind(err) != errKind(wholeErr) {
			t.Fatalf("whole: %d %q; in reads of %d: %d %q", whole, errKind(wholeErr), step, n, errKind(err))
		}
		if n > len(data) {
			t.Fatalf("let %d bytes through of %d", n, len(data))
		}
		good := wellFormed(data)
		if n, err := feed(1024, 0, [][]byte{good}); err != nil || n != len(good) {
			t.Fatalf("refused well-formed requests after %d of %d bytes: %v\n%q", n, len(good), err, good)
		}
	})
}

// BenchmarkGuardAuthrep is the guard's cost on the hot path: one authrep
// request as a gateway sends it.
func BenchmarkGuardAuthrep(b *testing.B) {
	req := []byte("GET /transactions/authrep.xml?service_token=st-0123456789abcdef&service_id=2555417777820&user_key=0123456789abcdef0123456789abcdef&usage%5Bhits%5D=1 HTTP/1.1\r\n" +
		"Host: sluice.internal:3001\r\nUser-Agent: APIcast/3.15\r\nAccept: */*\r\n3scale-options: rejection_reason_header=1&limit_headers=1\r\n\r\n")
	g := guard{maxLine: 8 << 10}
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.scan(req); err != nil {
			b.Fatal(err)
		}
	}
}
