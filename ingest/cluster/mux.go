package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// The forwarding hop pipelines HTTP/1.1 over a few long-lived connections
// per owner instead of one connection per call in flight. On a busy node
// many calls for the same owner are in flight at once; pipelined, they share
// write and read system calls on both nodes (the owner's server reads them
// in one read and flushes their answers in one write once its input is
// drained), which is where a forwarded call's cost goes: on loopback a write
// costs about as much as deciding the call. The owner needs nothing special:
// it answers pipelined requests in order, as HTTP/1.1 requires.
const (
	// muxConns is how many connections a node keeps to each owner: the
	// owner answers one connection's calls one after the other, so more
	// than one lets two of its cores decide forwarded calls.
	muxConns = 2
	// muxIdle is how long a connection may sit unused before it is
	// replaced rather than reused: shorter than the servers' idle timeout,
	// so that the owner never closes a connection a call is being written
	// on.
	muxIdle = 10 * time.Second
	// muxDialTimeout bounds connecting to an owner; past it the owner is
	// unreachable.
	muxDialTimeout = 500 * time.Millisecond
	// muxMaxBody bounds an owner's answer as read by the forwarder.
	muxMaxBody = 1 << 20
)

// errMuxClosed is what a call gets when its connection closed before its
// answer came.
var errMuxClosed = errors.New("cluster: forwarding connection closed")

// muxClient forwards calls to one owner.
type muxClient struct {
	addr    string
	tls     *tls.Config // nil: plain HTTP
	timeout time.Duration
	next    atomic.Uint32
	dialMu  sync.Mutex
	conns   [muxConns]atomic.Pointer[muxConn]
}

// muxCall is one forwarded call: its request bytes on the way out and where
// its answer goes.
type muxCall struct {
	req  []byte
	resp *fasthttp.Response
	done chan error // receives exactly once: nil when resp holds the answer
}

var callPool = sync.Pool{New: func() any { return &muxCall{done: make(chan error, 1)} }}

// muxConn is one pipelined connection. Calls are queued in the order their
// requests are written, which is the order the owner answers them.
type muxConn struct {
	c        net.Conn
	timeout  time.Duration
	lastUsed atomic.Int64 // unix nanoseconds of the last call sent

	mu      sync.Mutex
	out     []byte // requests not yet written
	spare   []byte
	writing bool // a caller is writing out; others only append
	queue   callQueue
	dead    bool
}

// do sends req (a complete HTTP/1.1 request) to the owner and reads its
// answer into resp. sent reports whether the request may have reached the
// owner: when it is false nothing was counted there and the call may be
// decided elsewhere.
func (m *muxClient) do(req []byte, resp *fasthttp.Response) (sent bool, err error) {
	call := callPool.Get().(*muxCall)
	call.req, call.resp = req, resp
	defer func() {
		call.req, call.resp = nil, nil
		callPool.Put(call)
	}()
	i := m.next.Add(1) % muxConns
	for attempt := 0; ; attempt++ {
		c, err := m.conn(i)
		if err != nil {
			return false, err
		}
		if c.send(call) {
			return true, <-call.done
		}
		// The connection died before the request was queued on it: the
		// request never left, so another connection may carry it.
		if attempt > 0 {
			return false, errMuxClosed
		}
	}
}

// conn returns connection i to the owner, dialing when there is none, it
// died, or it sat idle too long.
func (m *muxClient) conn(i uint32) (*muxConn, error) {
	if c := m.conns[i].Load(); c != nil && c.usable() {
		return c, nil
	}
	m.dialMu.Lock()
	defer m.dialMu.Unlock()
	old := m.conns[i].Load()
	if old != nil {
		if old.usable() {
			return old, nil
		}
		old.close(errMuxClosed)
	}
	nc, err := m.dial()
	if err != nil {
		return nil, err
	}
	c := &muxConn{c: nc, timeout: m.timeout}
	c.lastUsed.Store(time.Now().UnixNano())
	m.conns[i].Store(c)
	go c.read()
	return c, nil
}

// dial connects to the owner; with TLS the handshake completes here, so that
// a certificate that does not verify means unreachable, before any request
// is written.
func (m *muxClient) dial() (net.Conn, error) {
	d := &net.Dialer{Timeout: muxDialTimeout}
	if m.tls == nil {
		return d.Dial("tcp", m.addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), muxDialTimeout)
	defer cancel()
	return (&tls.Dialer{NetDialer: d, Config: m.tls}).DialContext(ctx, "tcp", m.addr)
}

// close closes every connection; calls in flight get errMuxClosed.
func (m *muxClient) close() {
	m.dialMu.Lock()
	defer m.dialMu.Unlock()
	for i := range m.conns {
		if c := m.conns[i].Swap(nil); c != nil {
			c.close(errMuxClosed)
		}
	}
}

func (c *muxConn) usable() bool {
	c.mu.Lock()
	dead := c.dead
	c.mu.Unlock()
	return !dead && time.Since(time.Unix(0, c.lastUsed.Load())) < muxIdle
}

// send queues call and writes it out, together with whatever other callers
// queue meanwhile: the caller that finds nobody writing writes for everyone
// until nothing is left. It returns false, without queueing, when the
// connection is dead.
func (c *muxConn) send(call *muxCall) bool {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return false
	}
	c.lastUsed.Store(time.Now().UnixNano())
	if c.queue.len() == 0 {
		// The read deadline runs only while answers are due: an idle
		// connection waits for the owner without one.
		c.c.SetReadDeadline(time.Now().Add(c.timeout))
	}
	c.queue.push(call)
	c.out = append(c.out, call.req...)
	if c.writing {
		c.mu.Unlock()
		return true
	}
	c.writing = true
	for len(c.out) > 0 && !c.dead {
		b := c.out
		c.out = c.spare[:0]
		c.mu.Unlock()
		c.c.SetWriteDeadline(time.Now().Add(c.timeout))
		_, err := c.c.Write(b)
		c.mu.Lock()
		c.spare = b[:0]
		if err != nil {
			c.failLocked(err)
		}
	}
	c.writing = false
	c.mu.Unlock()
	return true
}

// read reads the owner's answers, in order, into the queued calls.
func (c *muxConn) read() {
	br := bufio.NewReaderSize(c.c, 4096)
	for {
		if _, err := br.Peek(1); err != nil {
			c.close(err)
			return
		}
		c.mu.Lock()
		call, ok := c.queue.pop()
		c.mu.Unlock()
		if !ok {
			// Bytes nobody asked for: the stream cannot be trusted.
			c.close(errMuxClosed)
			return
		}
		if err := call.resp.ReadLimitBody(br, muxMaxBody); err != nil {
			call.resp.Reset()
			call.done <- err
			c.close(err)
			return
		}
		c.mu.Lock()
		if c.queue.len() > 0 {
			c.c.SetReadDeadline(time.Now().Add(c.timeout))
		} else {
			c.c.SetReadDeadline(time.Time{})
		}
		c.mu.Unlock()
		call.done <- nil
	}
}

// close marks the connection dead, closes it and fails the calls still
// waiting for an answer.
func (c *muxConn) close(err error) {
	c.mu.Lock()
	c.failLocked(err)
	c.mu.Unlock()
}

func (c *muxConn) failLocked(err error) {
	if !c.dead {
		c.dead = true
		c.c.Close()
	}
	for {
		call, ok := c.queue.pop()
		if !ok {
			return
		}
		call.done <- err
	}
}

// callQueue is a FIFO ring of calls whose answers are due.
type callQueue struct {
	buf  []*muxCall
	head int
	n    int
}

func (q *callQueue) len() int { return q.n }

func (q *callQueue) push(c *muxCall) {
	if q.n == len(q.buf) {
		grown := make([]*muxCall, max(16, 2*len(q.buf)))
		for i := range q.n {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = c
	q.n++
}

func (q *callQueue) pop() (*muxCall, bool) {
	if q.n == 0 {
		return nil, false
	}
	c := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return c, true
}
