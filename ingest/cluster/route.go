package cluster

import (
	"crypto/tls"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/ingest/smapi"
)

// Headers between the nodes of a cluster. A client may send them too: a
// forwarded call is only ever decided by the partition's owner, so they open
// nothing.
var (
	// hdrForwarded marks a call another node forwarded: it is not forwarded
	// again.
	hdrForwarded = []byte("X-Sluice-Forwarded")
	// hdrNotOwner marks the answer of a node that does not own the call's
	// partition (any longer): the forwarder refreshes its directory and
	// tries again.
	hdrNotOwner = []byte("X-Sluice-Not-Owner")
	valueYes    = []byte("1")
)

// Tokens Route returns besides a partition number.
const (
	tokenNone        int32 = -1 // decided here without ownership: a plan without exact limits
	tokenUnreachable int32 = -2 // decided here because the owner could not be reached
)

// Route says where a call for app (of svc) is decided (smapi.Router). With
// smapi.Decide this node decides it and the caller calls Done(token, units)
// once the call's event is appended; with smapi.Answered the owner's answer
// has been relayed into ctx; with smapi.Unavailable the caller answers 503
// with Retry-After.
//
// A node decides a call itself when the plan has no exact limit, when it
// owns the application's partition (waiting while the partition is still
// being caught up), or when the owner cannot be reached under the Local
// policy. Route never decides for a partition being given up.
func (n *Node) Route(ctx *fasthttp.RequestCtx, svc *catalog.Service, app *catalog.App) (token int32, v smapi.Verdict) {
	if plan := app.Plan(); plan == nil || !plan.Exact {
		return tokenNone, smapi.Decide
	}
	var kb [128]byte
	p := kafka.Partition(event.Key(kb[:0], svc.ID, app.ID), n.n)
	forwarded := len(ctx.Request.Header.PeekBytes(hdrForwarded)) > 0
	deadline := time.Now().Add(n.o.HandoffTimeout)
	waited := false
	for {
		n.inflight[p].Add(1)
		st := n.state[p].Load()
		if st == owned {
			if waited {
				n.m.callsWaited.Inc()
			}
			if forwarded {
				n.m.relayed.Inc()
			}
			return p, smapi.Decide
		}
		n.inflight[p].Add(-1)
		switch {
		case forwarded:
			n.m.notOwner.Inc()
			ctx.Response.Header.SetBytesKV(hdrNotOwner, valueYes)
			return tokenNone, smapi.Unavailable
		case n.cutOff():
			// This node cannot see the group (Kafka unreachable from here):
			// it cannot know the owner, as when the owner is unreachable.
			return n.ownerUnreachable()
		case n.orphan[p].Load() && (st == catchingUp || n.owner(p) == "" || n.owner(p) == n.o.Advertise):
			// Lost by this node's expired session and not yet decided by
			// anyone who caught up: as with an unreachable owner.
			return n.ownerUnreachable()
		case st == catchingUp || st == revoking:
			// The rule's wait: the partition is moving to or from here.
		default:
			owner := n.owner(p)
			if owner == "" || owner == n.o.Advertise {
				n.requestRefresh() // no owner yet, or the directory is behind us
				break
			}
			switch n.forward(ctx, owner) {
			case relayed:
				return tokenNone, smapi.Answered
			case unreachable:
				return n.ownerUnreachable()
			case broken:
				return tokenNone, smapi.Unavailable
			case stale:
				n.requestRefresh()
			}
		}
		if !time.Now().Before(deadline) {
			n.m.handoffTimeouts.Inc()
			return tokenNone, smapi.Unavailable
		}
		waited = true
		time.Sleep(5 * time.Millisecond)
	}
}

// ownerUnreachable applies the owner-unreachable policy to a call.
func (n *Node) ownerUnreachable() (int32, smapi.Verdict) {
	n.m.unreachable.Inc()
	if n.o.OwnerUnreachable == Local {
		n.m.unreachableDecisions.Inc()
		return tokenUnreachable, smapi.Decide
	}
	return tokenNone, smapi.Unavailable
}

// Done ends a decision Route let this node make; units is the usage it
// admitted (0 for a denial or an authorize).
func (n *Node) Done(token int32, units int64) {
	switch {
	case token >= 0:
		n.inflight[token].Add(-1)
	case token == tokenUnreachable && units > 0:
		n.m.unreachableUnits.Add(uint64(units))
	}
}

// forwardResult is what a forward came to.
type forwardResult uint8

const (
	relayed     forwardResult = iota // the owner's answer is in ctx
	stale                            // the node is not the owner (any longer)
	unreachable                      // no connection: the request never left
	broken                           // the connection broke after the request was sent
)

// forwarder keeps one pipelining client per owner address.
type forwarder struct {
	mu      sync.RWMutex
	clients map[string]*muxClient
	timeout time.Duration
	tls     *tls.Config // nil: plain HTTP
}

func (f *forwarder) init(timeout time.Duration, tlsCfg *tls.Config) {
	f.clients = make(map[string]*muxClient)
	f.timeout = timeout
	f.tls = tlsCfg
}

func (f *forwarder) client(addr string) *muxClient {
	f.mu.RLock()
	c := f.clients[addr]
	f.mu.RUnlock()
	if c != nil {
		return c
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c = f.clients[addr]; c == nil {
		c = &muxClient{addr: addr, tls: f.tls, timeout: f.timeout}
		f.clients[addr] = c
	}
	return c
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.clients {
		c.close()
	}
}

// reqPool holds the forwarded requests' copies and wire bytes.
var reqPool = sync.Pool{New: func() any { return new(forwardReq) }}

type forwardReq struct {
	req  fasthttp.Request
	wire []byte
}

// forward sends the call in ctx to owner and puts the answer in ctx. The
// request goes as the caller sent it, but for the hop's own framing: its
// Host, the forwarded mark, no Connection: close (the hop's connection is
// shared) and the body as a Content-Length body.
func (n *Node) forward(ctx *fasthttp.RequestCtx, owner string) forwardResult {
	fr := reqPool.Get().(*forwardReq)
	defer reqPool.Put(fr)
	req := &fr.req
	ctx.Request.CopyTo(req)
	req.Header.SetHost(owner)
	req.Header.SetBytesKV(hdrForwarded, valueYes)
	req.Header.ResetConnectionClose()
	req.Header.SetContentLength(len(req.Body()))
	fr.wire = append(req.Header.AppendBytes(fr.wire[:0]), req.Body()...)
	req.Reset()
	resp := &ctx.Response
	began := time.Now()
	sent, err := n.fwd.client(owner).do(fr.wire, resp)
	switch {
	case err == nil:
		if len(resp.Header.PeekBytes(hdrNotOwner)) > 0 {
			resp.Reset()
			return stale
		}
		n.m.forwarded.Inc()
		n.m.forwardLatency.ObserveDuration(time.Since(began))
		return relayed
	case !sent:
		resp.Reset()
		return unreachable
	default:
		resp.Reset()
		n.m.forwardErrors.Inc()
		return broken
	}
}

// AppendStatus appends this node's cluster state to a JSON object under
// construction: `"cluster":{"group":...,"owned":[...]}`.
func (n *Node) AppendStatus(dst []byte) []byte {
	dst = append(dst, `"cluster":{"group":"`...)
	dst = append(dst, n.group...)
	dst = append(dst, `","advertise":"`...)
	dst = append(dst, n.o.Advertise...)
	dst = append(dst, `","owned":[`...)
	for i, p := range n.Owned() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(p), 10)
	}
	return append(dst, "]}"...)
}
