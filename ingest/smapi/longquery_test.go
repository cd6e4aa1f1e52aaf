package smapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/3scale/3scale-go-client/threescale"
	"github.com/3scale/3scale-go-client/threescale/api"
	threescalehttp "github.com/3scale/3scale-go-client/threescale/http"

	"github.com/sluice-dev/sluice/ingest/event"
)

// queryRecorder is an http.RoundTripper that notes the size of each
// request's query and body before sending it on.
type queryRecorder struct {
	mu    sync.Mutex
	query []int
	body  []int64
}

func (q *queryRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	q.mu.Lock()
	q.query = append(q.query, len(r.URL.RawQuery))
	q.body = append(q.body, r.ContentLength)
	q.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (q *queryRecorder) last() (int, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.query[len(q.query)-1], q.body[len(q.body)-1]
}

// TestGoClientLongBatches sends batch reports with the public 3scale Go
// client, which puts the whole batch in the query string of a body-less
// POST: 100 and 1,000 transactions are accepted and every transaction is
// counted; 1,001 is refused whole, as any batch over MaxTransactions.
func TestGoClientLongBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a TCP server")
	}
	e := newEnv(t)
	e.now.Store(time.Now().UnixNano())
	base := startTCP(t, e)
	rec := &queryRecorder{}
	c, err := threescalehttp.NewClient(base, &http.Client{Timeout: 10 * time.Second, Transport: rec})
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"uk-a1", "uk-a2", "uk-free"}
	batch := func(n int) []api.Transaction {
		txns := make([]api.Transaction, n)
		now := time.Now().Unix()
		for i := range txns {
			txns[i] = api.Transaction{
				Params:    api.Params{UserKey: keys[i%len(keys)]},
				Metrics:   api.Metrics{"search": 1 + i%3, "upload": 2},
				Timestamp: now - int64(i%60),
			}
		}
		return txns
	}
	for _, tc := range []struct {
		name     string
		n        int
		accepted bool
		code     string
	}{
		{"100 transactions", 100, true, ""},
		{"1,000 transactions", 1000, true, ""},
		{"1,001 transactions", 1001, false, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.sink.Reset()
			txns := batch(tc.n)
			res, err := c.Report(threescale.Request{Auth: api.ClientAuth{Type: api.ServiceToken, Value: "st-a"}, Service: "svc-a", Transactions: txns})
			if err != nil {
				t.Fatalf("Report: %v", err)
			}
			q, body := rec.last()
			if q <= 8<<10 || body > 0 {
				t.Fatalf("the client sent a %d-byte query and a %d-byte body; the test needs a long query and no body", q, body)
			}
			if res.Accepted != tc.accepted || res.ErrorCode != tc.code {
				t.Fatalf("Report of %d (a %d-byte query) = accepted %v, code %q; want %v, %q", tc.n, q, res.Accepted, res.ErrorCode, tc.accepted, tc.code)
			}
			evs := e.sink.Events()
			if !tc.accepted {
				if len(evs) != 0 {
					t.Fatalf("a refused batch recorded %d events", len(evs))
				}
				return
			}
			if len(evs) != tc.n {
				t.Fatalf("%d events for %d transactions", len(evs), tc.n)
			}
			want := map[string]int64{}
			for _, tx := range txns {
				for m, v := range tx.Metrics {
					want[tx.Params.UserKey+"/"+m] += int64(v)
				}
			}
			appKey := map[string]string{"app1": "uk-a1", "app2": "uk-a2", "app-free": "uk-free"}
			got := map[string]int64{}
			for _, ev := range evs {
				if ev.Kind != event.KindReport {
					t.Fatalf("event kind %v", ev.Kind)
				}
				for _, u := range ev.Usage {
					got[appKey[ev.AppID]+"/"+u.Metric] += u.Value
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("recorded usage %v, want %v", got, want)
			}
		})
	}
}

// heapAndStacks returns the bytes of heap objects and goroutine stacks in
// use after the garbage collector has run (twice, so that sync.Pools are
// emptied as well).
func heapAndStacks() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// TestIdleConnectionMemory shows that the 1 MiB request line the server
// accepts does not cost idle connections a 1 MiB read buffer each. N
// keep-alive connections that each finished a request and now wait for
// the next hold at most the short read buffer (ServerReadBufferSize) plus
// a goroutine's and a socket's worth, whether their request was short or
// a long line that moved them to the long-line server (which holds no
// buffer while idle). Client and server sides of every connection are both
// in this process, so both are counted.
func TestIdleConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a TCP server")
	}
	e := newEnv(t)
	e.now.Store(time.Now().UnixNano())
	base := startTCP(t, e)
	addr := strings.TrimPrefix(base, "http://")

	// request sends one request on conn and reads its answer whole,
	// leaving the connection open.
	request := func(conn net.Conn, target string) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, "POST "+target+" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 512), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("POST %.40s...: status %d", target, resp.StatusCode)
		}
	}
	// Nearly the longest URL, with one transaction: the memory an event
	// takes in the test's sink is not what is measured.
	long := "/transactions.xml?" + stA + manyTxns(1) + "&pad=" + strings.Repeat("x", MaxURLLength-1024)
	if len(long) > MaxURLLength {
		t.Fatalf("the long request is %d bytes", len(long))
	}
	short := "/transactions.xml?" + stA + manyTxns(1)

	// What an idle connection may hold: the short read buffer, and 32 KiB
	// for goroutine stacks, write buffer, socket and connection state on
	// both sides (heap spans come in 8 KiB pages).
	bound := int64(ServerReadBufferSize + 32<<10)
	if bound*8 > LongLineReadBufferSize {
		t.Fatalf("bound %d does not tell the read buffers apart (long: %d)", bound, LongLineReadBufferSize)
	}
	const n = 32
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	warm, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conns = append(conns, warm)
	request(warm, long)
	request(warm, short)
	for _, target := range []string{short, long} {
		before := heapAndStacks()
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			request(c, target)
		}
		// Let the server's goroutines reach their wait for the next request.
		time.Sleep(100 * time.Millisecond)
		per := (heapAndStacks() - before) / n
		t.Logf("%d idle connections after a %d-byte request: %d bytes each (bound %d; long-line read buffer %d)", n, len(target), per, bound, LongLineReadBufferSize)
		if per > bound {
			t.Fatalf("each idle connection after a %d-byte request holds %d bytes, over %d", len(target), per, bound)
		}
	}
	// Every idle connection still serves.
	for _, c := range conns {
		request(c, short)
	}
}
