package httpserver

import (
	"errors"
	"net"
	"sync"
)

// errHandoff is the read error with which the short server lets go of a
// connection whose request line is for the long-line server.
var errHandoff = errors.New("httpserver: request line handed to the long-line server")

// longLines connects a listener's two servers: the one every connection
// starts on, whose read buffer holds ordinary requests, and the one that
// takes a connection over when a request line is longer than that buffer
// allows (Options.LongLines).
type longLines struct {
	shortLine int // longest request line the short server reads
	shortPass int // most bytes the short server may be handed at once without filling its buffer
	longPass  int // the same for the long-line server
	ln        *handoffListener
}

// pass is how many bytes of an incomplete request c's server may be
// given before a refusal: fewer than its read buffer holds, so that it
// reads the refusal rather than a full buffer.
func (l *longLines) pass(c *conn) int {
	if c.long {
		return l.longPass
	}
	return l.shortPass
}

// handOver gives c to the long-line server; false if it is shutting down
// (then c is closed as any other).
func (l *longLines) handOver(c *conn) bool {
	c.handoff, c.toLong, c.long, c.err, c.after = false, false, true, c.after, nil
	c.pend, c.held = c.held, nil
	c.g.longFrom, c.g.longStart = 0, -1
	return l.ln.push(c)
}

// readLong is Read with long lines: a request line that does not end
// within the read where it starts is withheld and read to its end (or to
// the line limit) first. The short server therefore only ever sees whole
// request lines: one longer than it reads goes, with everything read after
// it, to the long-line server (errHandoff), which a connection then keeps.
// The withheld bytes are the client's own, at most the line limit plus one
// read: memory follows what the client sent, where a read buffer sized
// for the longest line would cost every connection that much.
func (c *conn) readLong(p []byte) (int, error) {
	for {
		if len(c.pend) > 0 {
			n := copy(p, c.pend)
			c.pend = c.pend[n:]
			if len(c.pend) == 0 {
				c.pend = nil
			}
			return n, nil
		}
		if c.err != nil {
			return 0, c.err
		}
		if c.toLong {
			c.handoff, c.err = true, errHandoff
			return 0, errHandoff
		}
		if len(c.held) == 0 {
			// The line is read straight into fasthttp's buffer when it
			// ends within this read, the common case.
			n, err := c.readConn(p)
			if n == 0 {
				return n, err
			}
			base := c.g.pos
			k, refused := c.g.scan(p[:n])
			if refused != nil && !c.long && c.g.longStart >= 0 {
				// A line for the long-line server came before the point of
				// refusal: that server answers it, then meets the refusal.
				rel := int(c.g.longStart - base)
				c.held = append([]byte(nil), p[rel:max(k, rel)]...)
				c.toLong, c.after, c.g.longStart = true, c.refusal(refused), -1
				if rel > 0 {
					return rel, nil
				}
				continue
			}
			if refused != nil {
				return c.refuse(k, refused)
			}
			if c.g.longStart >= 0 {
				// A whole line for the long-line server: what came before
				// it is this server's, the rest the other's.
				rel := int(c.g.longStart - base)
				c.held = append([]byte(nil), p[rel:n]...)
				c.toLong, c.g.longStart = true, -1
				if rel > 0 {
					return rel, nil
				}
				continue
			}
			if c.g.state == stLine {
				if rel := c.g.lineStart - base; rel >= 0 && rel < int64(n) {
					c.held = append(make([]byte, 0, max(2*(n-int(rel)), 4096)), p[rel:n]...)
					c.heldAt = c.g.lines
					n = int(rel)
				}
			}
			if n > 0 || err != nil {
				if n == 0 {
					c.pend, c.held = c.capped(c.held), nil
					c.err = err
					continue
				}
				return n, err
			}
			continue
		}
		if err := c.readHeld(); err != nil {
			return 0, err
		}
	}
}

// readHeld reads more of the withheld line. When the line ends, it is
// handed to the long-line server if the short server cannot read it
// (returning errHandoff), or becomes pend with what followed it up to the
// next incomplete request line, which stays held.
func (c *conn) readHeld() error {
	if cap(c.held)-len(c.held) < 4096 {
		grown := make([]byte, len(c.held), 2*cap(c.held)+4096)
		copy(grown, c.held)
		c.held = grown
	}
	start := len(c.held)
	m, err := c.readConn(c.held[start:cap(c.held)])
	if m > 0 {
		c.held = c.held[:start+m]
		base := c.g.pos - int64(start) // stream offset of held[0]
		k, refused := c.g.scan(c.held[start:])
		switch {
		case refused != nil && !c.long && c.g.longStart >= 0:
			// As in readLong: the long-line server answers the line, then
			// meets the refusal.
			rel := int(c.g.longStart - base)
			c.pend, c.held = c.held[:rel:rel], c.held[rel:max(start+k, rel)]
			c.toLong, c.after, c.g.longStart = true, c.refusal(refused), -1
			if len(c.pend) == 0 {
				c.pend = nil
			}
			return nil
		case refused != nil:
			// The server gets the request as far as the refusal (as much
			// as it takes), then the refusal.
			c.pend, c.held = c.capped(c.held[:start+k]), nil
			if n, rerr := c.refuse(0, refused); n == 0 {
				c.pend = nil // a TLS record: nothing for the server
				return rerr
			}
			return nil
		case c.g.longStart >= 0:
			// A line for the long-line server ended: what came before it
			// is this server's, the rest the other's.
			rel := int(c.g.longStart - base)
			c.pend, c.held = c.held[:rel:rel], c.held[rel:]
			c.toLong, c.g.longStart = true, -1
			if len(c.pend) == 0 {
				c.pend = nil
			}
			return nil
		case c.g.lines != c.heldAt:
			data := c.held
			c.held = nil
			if c.g.state == stLine {
				if rel := c.g.lineStart - base; rel > 0 && rel < int64(len(data)) {
					c.held = append(make([]byte, 0, max(2*(len(data)-int(rel)), 4096)), data[rel:]...)
					c.heldAt = c.g.lines
					data = data[:rel]
				}
			}
			c.pend = data
			return nil
		}
	}
	if err != nil {
		// The client stopped in the middle of a line: the server reads
		// what came, then the error, as without withholding.
		c.pend, c.held = c.capped(c.held), nil
		c.err = err
	}
	return nil
}

// capped cuts b to what c's server may be given of an incomplete request.
func (c *conn) capped(b []byte) []byte {
	if n := c.ll.pass(c); len(b) > n {
		return b[:n]
	}
	return b
}

// handoffListener is the long-line server's listener: the connections the
// short server let go of.
type handoffListener struct {
	addr   net.Addr
	ch     chan net.Conn
	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to the long-line server, waiting for it to accept; false
// once the listener is closed.
func (l *handoffListener) push(c net.Conn) bool {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return false
	}
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept returns the next connection handed over.
func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops handing over; connections pushed later are closed by their
// short server as any other.
func (l *handoffListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	return nil
}

// Addr is the address of the listener the connections came from.
func (l *handoffListener) Addr() net.Addr { return l.addr }
