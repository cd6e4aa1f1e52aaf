package cluster

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// muxServer serves handler on a loopback port until the test ends.
func muxServer(t *testing.T, handler fasthttp.RequestHandler) (addr string, ln net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String(), ln
}

func wireGET(t *testing.T, uri string) []byte {
	t.Helper()
	var req fasthttp.Request
	req.SetRequestURI(uri)
	req.Header.SetHost("owner")
	return req.Header.AppendBytes(nil)
}

// Many callers share the pipelined connections: every caller gets the
// answer to its own request, whatever the interleaving.
func TestMuxAnswersEachCallerItsOwn(t *testing.T) {
	addr, _ := muxServer(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("X-Echo", string(ctx.QueryArgs().Peek("n")))
		ctx.SetBodyString("n=" + string(ctx.QueryArgs().Peek("n")))
	})
	m := &muxClient{addr: addr, timeout: 5 * time.Second}
	defer m.close()
	const callers, calls = 32, 200
	var wg sync.WaitGroup
	errs := make(chan string, callers)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp fasthttp.Response
			for i := range calls {
				n := strconv.Itoa(c*calls + i)
				sent, err := m.do(wireGET(t, "/x?n="+n), &resp)
				switch {
				case err != nil || !sent:
					errs <- "call " + n + ": sent=" + strconv.FormatBool(sent) + " err=" + errString(err)
					return
				case string(resp.Body()) != "n="+n || string(resp.Header.Peek("X-Echo")) != n:
					errs <- "call " + n + " got " + string(resp.Body())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// Nobody listening: the request never left, so the caller may decide
// elsewhere.
func TestMuxUnreachableIsNotSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	m := &muxClient{addr: addr, timeout: time.Second}
	var resp fasthttp.Response
	sent, err := m.do(wireGET(t, "/x"), &resp)
	if sent || err == nil {
		t.Fatalf("sent=%v err=%v, want not sent and an error", sent, err)
	}
}

// The owner closes the connection while answers are due: every waiting call
// fails as sent (it may have been counted), and the next call dials anew.
func TestMuxConnectionLostFailsWaitingCalls(t *testing.T) {
	release := make(chan struct{})
	var first sync.Once
	addr, _ := muxServer(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/hang" {
			first.Do(func() { <-release })
			ctx.SetConnectionClose()
			return
		}
		ctx.SetBodyString("ok")
	})
	m := &muxClient{addr: addr, timeout: 5 * time.Second}
	defer m.close()

	// Hold the owner on one connection's first call, queue more behind it,
	// then have the owner close that connection after answering it.
	const behind = 5
	type result struct {
		sent bool
		err  error
		body string
	}
	results := make(chan result, behind+1)
	var conn *muxConn
	for i := range behind + 1 {
		uri := "/after"
		if i == 0 {
			uri = "/hang"
		}
		// Every call on connection 0: the first hangs, the rest queue.
		c, err := m.conn(0)
		if err != nil {
			t.Fatal(err)
		}
		conn = c
		go func() {
			call := &muxCall{req: wireGET(t, uri), resp: new(fasthttp.Response), done: make(chan error, 1)}
			if !c.send(call) {
				results <- result{}
				return
			}
			err := <-call.done
			results <- result{true, err, string(call.resp.Body())}
		}()
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	var ok, failed int
	for range behind + 1 {
		r := <-results
		switch {
		case r.err == nil:
			ok++
		case r.sent:
			failed++
		default:
			t.Errorf("a queued call reported not sent: %+v", r)
		}
	}
	// The hanging call is answered (with Connection: close); the owner
	// closes the connection before reading the calls behind it.
	if ok != 1 || failed != behind {
		t.Fatalf("answered %d, failed %d; want 1 and %d", ok, failed, behind)
	}
	if conn.usable() {
		t.Fatal("the closed connection is still usable")
	}
	var resp fasthttp.Response
	if sent, err := m.do(wireGET(t, "/after"), &resp); err != nil || !sent || string(resp.Body()) != "ok" {
		t.Fatalf("after the loss: sent=%v err=%v body=%q", sent, err, resp.Body())
	}
}

// A connection unused for longer than muxIdle is replaced before the owner's
// idle timeout could close it under a call.
func TestMuxReplacesIdleConnection(t *testing.T) {
	addr, _ := muxServer(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	m := &muxClient{addr: addr, timeout: time.Second}
	defer m.close()
	c1, err := m.conn(0)
	if err != nil {
		t.Fatal(err)
	}
	c1.lastUsed.Store(time.Now().Add(-muxIdle - time.Second).UnixNano())
	c2, err := m.conn(0)
	if err != nil {
		t.Fatal(err)
	}
	if c1 == c2 || c1.usable() {
		t.Fatal("an idle connection was reused")
	}
}
