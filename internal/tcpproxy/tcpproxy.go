// Package tcpproxy is a TCP proxy for tests of what crosses a wide-area link:
// it forwards connections on a loopback port to a target address, adding a
// settable one-way delay to every byte in each direction, and can cut the
// link (Block) and heal it (Unblock).
//
// A delay applies to the bytes read after it is set; bytes already in
// flight keep the delay they were read with, so the order of bytes is never
// changed. While blocked, every open connection is closed and new ones are
// closed as soon as they are accepted, as when a network partition resets
// connections.
//
// NewKafka proxies one Kafka broker: it also rewrites the broker addresses
// of Metadata answers to its own, so that a client seeded with the proxy
// keeps going through it (a broker advertises its own address, which would
// bypass the proxy after the first request).
package tcpproxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Proxy forwards the connections it accepts to its target.
type Proxy struct {
	ln      net.Listener
	target  string
	kafka   bool         // rewrite Metadata answers to point at the proxy
	delay   atomic.Int64 // ns, one way
	blocked atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// New starts a proxy on a free loopback port forwarding to target.
func New(target string) (*Proxy, error) { return start(target, false) }

func start(target string, kafka bool) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, kafka: kafka, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// NewKafka starts a proxy for the Kafka broker at target (see the package
// doc).
func NewKafka(target string) (*Proxy, error) { return start(target, true) }

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDelay sets the one-way delay added to each direction.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Block cuts the link: open connections are closed, new ones refused.
func (p *Proxy) Block() {
	p.blocked.Store(true)
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// Unblock heals the link.
func (p *Proxy) Unblock() { p.blocked.Store(false) }

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Block()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blocked.Load() {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.blocked.Load() {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	if !p.track(c) {
		c.Close()
		return
	}
	defer p.untrack(c)
	u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	if !p.track(u) {
		u.Close()
		return
	}
	defer p.untrack(u)
	done := make(chan struct{}, 2)
	toServer, toClient := p.raw, p.raw
	if p.kafka {
		k := &kafkaConn{host: p.ln.Addr().(*net.TCPAddr).IP.String(), port: int32(p.ln.Addr().(*net.TCPAddr).Port), reqs: make(map[int32]reqKind)}
		toServer, toClient = k.requests, k.responses
	}
	go func() { p.pipe(u, c, toServer); done <- struct{}{} }()
	go func() { p.pipe(c, u, toClient); done <- struct{}{} }()
	<-done
	// One direction ended: end both.
	c.Close()
	u.Close()
	<-done
}

// chunk is bytes read at a time, due for writing at due.
type chunk struct {
	b   []byte
	due time.Time
}

// reader reads the next piece of a stream to forward.
type reader func(r *bufio.Reader) ([]byte, error)

// raw forwards whatever has arrived.
func (p *Proxy) raw(r *bufio.Reader) ([]byte, error) {
	b := make([]byte, 32<<10)
	n, err := r.Read(b)
	return b[:n], err
}

// pipe copies src to dst in the pieces read returns, holding each back by
// the delay in force when it was read.
func (p *Proxy) pipe(dst, src net.Conn, read reader) {
	ch := make(chan chunk, 1024)
	go func() {
		defer close(ch)
		br := bufio.NewReaderSize(src, 64<<10)
		for {
			b, err := read(br)
			if len(b) > 0 {
				ch <- chunk{b: b, due: time.Now().Add(time.Duration(p.delay.Load()))}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		if d := time.Until(c.due); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			for range ch {
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// kafkaConn follows one proxied Kafka connection: the requests' api keys and
// versions by correlation id, so that Metadata answers can be rewritten.
type kafkaConn struct {
	host string
	port int32
	mu   sync.Mutex
	reqs map[int32]reqKind
}

type reqKind struct{ key, version int16 }

// maxFrame bounds a Kafka frame the proxy reads (the brokers' default
// socket.request.max.bytes is 100 MiB).
const maxFrame = 128 << 20

func readFrame(r *bufio.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, errors.New("tcpproxy: Kafka frame too large")
	}
	b := make([]byte, 4+n)
	copy(b, hdr[:])
	_, err := io.ReadFull(r, b[4:])
	return b, err
}

// requests forwards request frames unchanged, noting their kind.
func (k *kafkaConn) requests(r *bufio.Reader) ([]byte, error) {
	b, err := readFrame(r)
	if err != nil || len(b) < 12 {
		return b, err
	}
	kind := reqKind{key: int16(binary.BigEndian.Uint16(b[4:])), version: int16(binary.BigEndian.Uint16(b[6:]))}
	corr := int32(binary.BigEndian.Uint32(b[8:]))
	k.mu.Lock()
	k.reqs[corr] = kind
	k.mu.Unlock()
	return b, nil
}

// responses forwards response frames, with the brokers of Metadata answers
// replaced by the proxy.
func (k *kafkaConn) responses(r *bufio.Reader) ([]byte, error) {
	b, err := readFrame(r)
	if err != nil || len(b) < 8 {
		return b, err
	}
	corr := int32(binary.BigEndian.Uint32(b[4:]))
	k.mu.Lock()
	kind, ok := k.reqs[corr]
	delete(k.reqs, corr)
	k.mu.Unlock()
	if !ok || kind.key != 3 { // 3: Metadata
		return b, nil
	}
	resp := kmsg.NewPtrMetadataResponse()
	resp.SetVersion(kind.version)
	body := b[8:]
	if resp.IsFlexible() {
		// The response header's tagged fields: brokers send none.
		if len(body) == 0 || body[0] != 0 {
			return b, nil
		}
		body = body[1:]
	}
	if err := resp.ReadFrom(body); err != nil {
		return b, nil
	}
	for i := range resp.Brokers {
		resp.Brokers[i].Host, resp.Brokers[i].Port = k.host, k.port
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 4, 64+len(b)), uint32(corr))
	if resp.IsFlexible() {
		out = append(out, 0)
	}
	out = resp.AppendTo(out)
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	return out, nil
}
