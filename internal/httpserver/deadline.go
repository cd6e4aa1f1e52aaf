package httpserver

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// lazyDeadline is one direction (read or write) of a plain TCP connection's
// deadline, armed lazily. fasthttp sets three deadlines per keep-alive
// request (the idle wait, the read, the write), each a timer update in the
// runtime, about a microsecond per request together; most of them only push
// a deadline a few microseconds further. So the deadline fasthttp asks for
// (want) is kept here, and the socket's (armed) is changed only when it
// would fire later than wanted: an armed deadline that fires before the
// wanted one is not a timeout, and the read or write that met it re-arms
// the wanted one and carries on. A timeout therefore reaches fasthttp at
// the deadline it set, never earlier, never later; a busy connection
// re-arms about once per timeout (30 s) instead of three times per request.
//
// Only plain TCP connections get this: a TLS connection's write state is
// corrupt after a timeout, so its deadlines go straight to the socket.
type lazyDeadline struct {
	want  atomic.Int64 // unix ns; 0: none
	armed atomic.Int64 // unix ns; 0: none
}

// set records t as wanted and arms it with arm if the armed deadline would
// fire after it (or none is armed).
func (d *lazyDeadline) set(t time.Time, c net.Conn, write bool) error {
	w := unixNano(t)
	d.want.Store(w)
	if a := d.armed.Load(); w == 0 || a != 0 && a <= w {
		return nil // no deadline wanted, or the armed one fires first: see early
	}
	return d.arm(c, write, w)
}

// early reports whether err is the armed deadline firing before the wanted
// one; the wanted one is then armed, and the caller retries.
func (d *lazyDeadline) early(err error, c net.Conn, write bool) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	w := d.want.Load()
	if w != 0 && time.Now().UnixNano() >= w {
		return false
	}
	return d.arm(c, write, w) == nil
}

func (d *lazyDeadline) arm(c net.Conn, write bool, w int64) error {
	var t time.Time
	if w != 0 {
		t = time.Unix(0, w)
	}
	var err error
	if write {
		err = c.SetWriteDeadline(t)
	} else {
		err = c.SetReadDeadline(t)
	}
	if err == nil {
		d.armed.Store(w)
	}
	return err
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// SetReadDeadline, SetWriteDeadline and SetDeadline arm plain TCP
// connections' deadlines lazily (see lazyDeadline).
func (c *conn) SetReadDeadline(t time.Time) error {
	if !c.lazy {
		return c.Conn.SetReadDeadline(t)
	}
	return c.rd.set(t, c.Conn, false)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	if !c.lazy {
		return c.Conn.SetWriteDeadline(t)
	}
	return c.wd.set(t, c.Conn, true)
}

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// readConn reads from the client, through deadlines that fire early.
func (c *conn) readConn(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if n > 0 || err == nil || !c.lazy || !c.rd.early(err, c.Conn, false) {
			return n, err
		}
	}
}

// writeConn writes to the client, through deadlines that fire early.
func (c *conn) writeConn(p []byte) (int, error) {
	done := 0
	for {
		n, err := c.Conn.Write(p[done:])
		done += n
		if err == nil || !c.lazy || !c.wd.early(err, c.Conn, true) {
			return done, err
		}
	}
}
