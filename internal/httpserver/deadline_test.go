package httpserver

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns a lazily-deadlined server side and the raw client side of
// a loopback TCP connection.
func tcpPair(t *testing.T) (*conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); srv.Close() })
	_, lazy := srv.(*net.TCPConn)
	if !lazy {
		t.Fatal("loopback connection is not a *net.TCPConn")
	}
	return &conn{Conn: srv, lazy: lazy}, client
}

// TestLazyDeadlines checks that a deadline armed lazily behaves as the one
// last set: an earlier one still armed is no timeout, a later one still
// armed is replaced, and a timeout is reported at the deadline set, not
// before.
func TestLazyDeadlines(t *testing.T) {
	const (
		short = 100 * time.Millisecond
		long  = 2 * time.Second
		peer  = 400 * time.Millisecond // when the peer acts
	)
	tests := []struct {
		name      string
		write     bool
		deadlines []time.Duration // set in turn, from the start; -1: none (zero time)
		peerActs  bool            // the peer writes (reads) after peer
		wantErr   bool
		atLeast   time.Duration // the call returns no sooner
		atMost    time.Duration // nor later
	}{
		{"read: an earlier armed deadline is no timeout", false, []time.Duration{short, long}, true, false, peer, long},
		{"read: times out at the later deadline, not the armed one", false, []time.Duration{short, peer}, false, true, peer, long},
		{"read: a shorter deadline replaces the armed one", false, []time.Duration{long, short}, false, true, short, peer},
		{"read: no deadline after one", false, []time.Duration{short, -1}, true, false, peer, long},
		{"write: an earlier armed deadline is no timeout", true, []time.Duration{short, long}, true, false, peer, long},
		{"write: times out at the later deadline, not the armed one", true, []time.Duration{short, peer}, false, true, peer, long},
		{"write: a shorter deadline replaces the armed one", true, []time.Duration{long, short}, false, true, short, peer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, client := tcpPair(t)
			start := time.Now()
			for _, d := range tc.deadlines {
				var at time.Time
				if d >= 0 {
					at = start.Add(d)
				}
				var err error
				if tc.write {
					err = c.SetWriteDeadline(at)
				} else {
					err = c.SetReadDeadline(at)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			// A write larger than both sockets' buffers blocks until the
			// peer reads.
			big := make([]byte, 64<<20)
			if tc.peerActs {
				go func() {
					time.Sleep(peer)
					if tc.write {
						io.Copy(io.Discard, client)
					} else {
						client.Write([]byte("x"))
					}
				}()
			}
			var n int
			var err error
			if tc.write {
				n, err = c.Write(big)
			} else {
				n, err = c.Read(big[:16])
			}
			took := time.Since(start)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("n %d, err %v; want an error: %v", n, err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err %v, want a deadline error", err)
			}
			if !tc.wantErr && tc.write && n != len(big) {
				t.Fatalf("wrote %d of %d bytes", n, len(big))
			}
			if took < tc.atLeast || took > tc.atMost+time.Second {
				t.Fatalf("returned after %v, want between %v and %v", took, tc.atLeast, tc.atMost+time.Second)
			}
		})
	}
}

// TestLazyDeadlinesSkipTheSocket checks what the laziness is for: setting a
// deadline later than the armed one leaves the socket alone.
func TestLazyDeadlinesSkipTheSocket(t *testing.T) {
	c, _ := tcpPair(t)
	now := time.Now()
	if err := c.SetReadDeadline(now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	armed := c.rd.armed.Load()
	for i := 1; i <= 100; i++ {
		if err := c.SetReadDeadline(now.Add(time.Second + time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.rd.armed.Load(); got != armed {
		t.Fatalf("armed deadline moved from %d to %d", armed, got)
	}
	if err := c.SetReadDeadline(now.Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if got, want := c.rd.armed.Load(), now.Add(time.Millisecond).UnixNano(); got != want {
		t.Fatalf("armed %d after a shorter deadline, want %d", got, want)
	}
}
