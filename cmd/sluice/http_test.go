package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/smapi"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
	"github.com/sluice-dev/sluice/internal/metrics"
)

// answerWithin bounds every exchange of the raw-socket tests. It is far
// below the servers' 30 s read timeout: a server that waits for bytes that
// never come fails the test instead of answering late, and a loaded machine
// still has seconds to spare.
const answerWithin = 5 * time.Second

// rawResult is how a server reacted to raw bytes.
type rawResult struct {
	resp *http.Response // nil if the connection ended without an answer
	body []byte
	err  error // why no answer was read (io.EOF: closed without a byte)
	took time.Duration
}

// exchange writes raw to addr and reads one answer, or the end of the
// connection, within answerWithin.
func exchange(t *testing.T, addr string, raw []byte) rawResult {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, answerWithin)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(answerWithin))
	if _, err := c.Write(raw); err != nil {
		return rawResult{err: err, took: time.Since(start)}
	}
	br := bufio.NewReader(c)
	if _, err := br.Peek(1); err != nil {
		return rawResult{err: err, took: time.Since(start)}
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return rawResult{err: err, took: time.Since(start)}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return rawResult{resp: resp, body: body, err: err, took: time.Since(start)}
}

// clientHello returns the first record a TLS client sends: what a client
// configured for https sends to a plain-HTTP port.
func clientHello(t *testing.T) []byte {
	t.Helper()
	cli, srv := net.Pipe()
	defer srv.Close()
	go func() {
		tls.Client(cli, &tls.Config{ServerName: "sluice.test"}).Handshake()
		cli.Close()
	}()
	buf := make([]byte, 64<<10)
	srv.SetReadDeadline(time.Now().Add(answerWithin))
	n, err := srv.Read(buf)
	if err != nil || n < 5 || buf[0] != 0x16 {
		t.Fatalf("capture a ClientHello: %d bytes, %v", n, err)
	}
	return buf[:n]
}

// listener is one of a node's HTTP listeners and how it answers errors.
type listener struct {
	name, addr string
	okPath     string // a path that answers 200 to a GET
	errorType  string // content type of its error answers
}

// startListeners starts every kind of HTTP listener a node runs: the API
// listener (Service Management API, admin API, /metrics, /health) of an API
// node, the query API of a query node, and the metrics listener of a
// rollup-only node.
func startListeners(t *testing.T) []listener {
	t.Helper()
	api, cfgFile := startAPIListener(t)

	ch, _ := chtest.Start(t)
	qry := freeAddr(t)
	qerrs := startServe(t, "serve", "--roles", "query", "--config-log", "file", "--clickhouse", ch.Addr(),
		"--query-listen", qry, "--data-dir", t.TempDir(), "--config", cfgFile, "--node", "h2")
	waitHealthy(t, qry, qerrs)

	ops := freeAddr(t)
	errc := make(chan error, 1)
	stop, err := startOpsListener(ops, listenTLS{}, metrics.NewRegistry(), errc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	waitHealthy(t, ops, nil)

	return []listener{
		api,
		{name: "query", addr: qry, okPath: "/health", errorType: "application/json"},
		{name: "metrics", addr: ops, okPath: "/health", errorType: "text/plain; charset=utf-8"},
	}
}

// startAPIListener starts an API node (over an in-process broker) and
// returns its listener and the configuration file it was started with.
func startAPIListener(t *testing.T) (listener, string) {
	t.Helper()
	brokers := startKfake(t, kfake.SeedTopics(2, event.Topic))
	cfgFile := writeConfig(t, `tenants:
  - id: acme
    admin_token: adm-http-test
    services:
      - id: svc
        tokens: [st-http]
        metrics: [{name: hits}]
        plans: [{id: basic, limits: [{metric: hits, period: minute, max: 100}]}]
        applications: [{id: app1, plan: basic, user_key: uk-http}]
`)
	api := freeAddr(t)
	startServe(t, "serve", "--roles", "api", "--kafka", brokers, "--listen", api, "--data-dir", t.TempDir(), "--config", cfgFile, "--node", "h1")
	waitReady(t, api)
	return listener{name: "api", addr: api, okPath: "/status", errorType: "application/vnd.3scale-v2.0+xml"}, cfgFile
}

// waitHealthy waits until addr answers /health with 200; errs is the node's
// stderr, for the failure message.
func waitHealthy(t *testing.T, addr string, errs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			out := ""
			if errs != nil {
				out = errs.String()
			}
			t.Fatalf("%s/health not 200 within 60s; stderr:\n%s", addr, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkError checks an error answer: status, content type and, for JSON
// listeners, the documented {"error":{"code","message"}} shape.
func checkError(t *testing.T, what string, r rawResult, status int, contentType, code string) {
	t.Helper()
	if r.resp == nil {
		t.Errorf("%s: no answer within %v (after %v): %v", what, answerWithin, r.took.Round(time.Millisecond), r.err)
		return
	}
	if r.resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d\n%s", what, r.resp.StatusCode, status, r.body)
	}
	if ct := r.resp.Header.Get("Content-Type"); ct != contentType {
		t.Errorf("%s: content type %q, want %q\n%s", what, ct, contentType, r.body)
	}
	switch {
	case contentType == "application/json":
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error.Code != code || eb.Error.Message == "" {
			t.Errorf("%s: body %s, want a JSON error with code %q", what, r.body, code)
		}
	case code != "":
		if !bytes.Contains(r.body, []byte(`code="`+code+`"`)) {
			t.Errorf("%s: body %s, want error code %q", what, r.body, code)
		}
	}
}

// TestListenersHostileHTTP sends broken HTTP over raw sockets to every kind
// of listener: a request whose lines end in a bare LF, a TLS ClientHello, a
// 16 KiB URL. Each gets its answer (or, for TLS, the connection closes with
// no byte sent) at once, not after the 30 s read timeout.
func TestListenersHostileHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sluice nodes over an in-process broker")
	}
	hello := clientHello(t)
	// Over each listener's URL limit: 16 KiB, except on the Service
	// Management API's listener, which reads request lines up to its body
	// limit (the 3scale Go client sends batch reports in the URL).
	longQuery := func(name string) string {
		if name == "api" {
			return "?x=" + strings.Repeat("a", smapi.MaxURLLength)
		}
		return "?x=" + strings.Repeat("a", 16<<10)
	}
	for _, l := range startListeners(t) {
		t.Run(l.name, func(t *testing.T) {
			code := func(c string) string {
				if l.name == "metrics" {
					return "" // plain text: no code
				}
				return c
			}
			// Lines ending in LF alone: fasthttp waits for a CRLFCRLF that
			// never comes; the guard refuses the request at once.
			r := exchange(t, l.addr, []byte("GET "+l.okPath+" HTTP/1.1\nHost: x\n\n"))
			checkError(t, "bare LF", r, 400, l.errorType, code("bad_request"))

			// A ClientHello: closed without an answer (an HTTP answer means
			// nothing to a TLS client).
			r = exchange(t, l.addr, hello)
			if r.resp != nil || !errors.Is(r.err, io.EOF) {
				t.Errorf("ClientHello: want the connection closed without a byte within %v; got answer %v, err %v after %v",
					answerWithin, r.resp != nil, r.err, r.took.Round(time.Millisecond))
			}

			// A URL over the limit: 414, not 431 (the read buffer is not
			// the limit a client is told about).
			uriCode := map[string]string{"api": "request_uri_too_long", "query": "uri_too_long"}[l.name]
			r = exchange(t, l.addr, []byte("GET "+l.okPath+longQuery(l.name)+" HTTP/1.1\r\nHost: x\r\n\r\n"))
			checkError(t, "long URL", r, 414, l.errorType, uriCode)

			// The listener still answers well-formed requests.
			r = exchange(t, l.addr, []byte("GET "+l.okPath+" HTTP/1.1\r\nHost: x\r\n\r\n"))
			if r.resp == nil || r.resp.StatusCode != 200 {
				t.Errorf("GET %s after the hostile requests: %+v", l.okPath, r)
			}
		})
	}
}

// TestAdminErrorsOnAPIListener: on the listener the admin API shares with
// the Service Management API, every error under /admin is JSON in the
// admin API's shape, including those the HTTP server answers before any
// handler runs; the Service Management API's stay 3scale XML.
func TestAdminErrorsOnAPIListener(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a sluice node over an in-process broker")
	}
	api, _ := startAPIListener(t)
	const tok = "Authorization: Bearer adm-http-test\r\n"
	const xml = "application/vnd.3scale-v2.0+xml"
	for _, c := range []struct {
		name, raw   string
		status      int
		contentType string
		code        string
	}{
		{"body over 1 MiB", "PUT /admin/api/v1/services/svc HTTP/1.1\r\nHost: x\r\n" + tok +
			"Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(1<<20+1) + "\r\n\r\n",
			413, "application/json", "body_too_large"},
		{"malformed header line", "GET /admin/api/v1/config HTTP/1.1\r\nHost: x\r\n" + tok + "Not a header\r\n\r\n",
			400, "application/json", "bad_request"},
		{"bad Content-Length", "PUT /admin/api/v1/services/svc HTTP/1.1\r\nHost: x\r\n" + tok + "Content-Length: -1\r\n\r\n",
			400, "application/json", "bad_request"},
		{"bare LF", "GET /admin/api/v1/config HTTP/1.1\nHost: x\n" + strings.TrimSuffix(tok, "\r\n") + "\n\n",
			400, "application/json", "bad_request"},
		{"16 KiB URL", "GET /admin/api/v1/config?x=" + strings.Repeat("a", 16<<10) + " HTTP/1.1\r\nHost: x\r\n" + tok + "\r\n",
			414, "application/json", "uri_too_long"},
		{"unknown path under /admin", "GET /admin/nothing HTTP/1.1\r\nHost: x\r\n" + tok + "\r\n", 404, "application/json", "not_found"},
		{"unknown path under /admin without a token", "GET /admin/api/v2/services HTTP/1.1\r\nHost: x\r\n\r\n", 404, "application/json", "not_found"},
		{"/admin itself", "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n", 404, "application/json", "not_found"},
		{"unknown route under the prefix", "GET /admin/api/v1/nothing HTTP/1.1\r\nHost: x\r\n" + tok + "\r\n", 404, "application/json", "not_found"},
		{"smapi: malformed header line", "GET /status HTTP/1.1\r\nHost: x\r\nNot a header\r\n\r\n", 400, xml, "bad_request"},
		{"smapi: body over 1 MiB", "POST /transactions.xml HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(1<<20+1) + "\r\n\r\n",
			413, xml, "request_entity_too_large"},
		{"smapi: unknown path", "GET /administrator HTTP/1.1\r\nHost: x\r\n\r\n", 404, xml, "not_found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkError(t, c.name, exchange(t, api.addr, []byte(c.raw)), c.status, c.contentType, c.code)
		})
	}
}
