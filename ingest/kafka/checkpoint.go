package kafka

import "math"

// Offset checkpoints bound how much of Kafka a recovery must read to find
// out which unconfirmed sends arrived. Every SpoolSyncInterval the producer
// takes a snapshot k of the highest offset Kafka acknowledged to it in each
// partition and publishes k as the journal's epoch (under the journal's
// mutex). A send that starts after that — a journal frame appended with
// epoch ≥ k, a drain batch pinned at epoch ≥ k — lands at offsets above the
// snapshot's, because the broker hands out offsets in order and those were
// already given. The journal header keeps the newest snapshot whose number
// is at most the oldest epoch of anything still unconfirmed (pending
// frames, the drain batch in flight, and, after a crash, the spool batch the
// previous process may have sent); recovery reads each partition after that
// snapshot's offset.

// ckRing is how many recent snapshots the producer keeps in memory, waiting
// for the unconfirmed sends that predate them to finish.
const ckRing = 64

type offsetSnapshot struct {
	k    uint64
	offs []int64
}

// noteAck records that Kafka acknowledged offset off of partition part.
func (p *Producer) noteAck(part int32, off int64) {
	if part < 0 || part >= maxTrackedPartitions {
		return
	}
	a := &p.acked[part]
	for {
		cur := a.Load()
		if off <= cur || a.CompareAndSwap(cur, off) {
			break
		}
	}
	for {
		n := p.nparts.Load()
		if part < n || p.nparts.CompareAndSwap(n, part+1) {
			return
		}
	}
}

// pinDrain marks the start of a drain batch's sends: no checkpoint newer
// than the current epoch may be persisted until unpinDrain.
func (p *Producer) pinDrain() {
	p.jr.mu.Lock()
	p.drainPin.Store(p.jr.epoch.Load())
	p.jr.mu.Unlock()
}

func (p *Producer) unpinDrain() { p.drainPin.Store(math.MaxUint64) }

// checkpoint takes a snapshot and persists the newest one that is safe.
// Called by the syncer only.
func (p *Producer) checkpoint() {
	s := &p.snaps[p.snapNext%ckRing]
	p.jr.mu.Lock()
	n := int(p.nparts.Load())
	s.offs = s.offs[:0]
	for i := range n {
		s.offs = append(s.offs, p.acked[i].Load())
	}
	s.k = p.jr.epoch.Load() + 1
	p.jr.epoch.Store(s.k)
	p.jr.mu.Unlock()
	p.snapNext++

	pin := min(p.jr.oldestPendingEpoch(), p.drainPin.Load(), p.startPin.Load())
	var best *offsetSnapshot
	for i := range ckRing {
		c := &p.snaps[i]
		if c.k != 0 && c.k <= pin && c.k > p.jr.ckK && (best == nil || c.k > best.k) {
			best = c
		}
	}
	if best != nil {
		p.jr.writeCheckpoint(best.k, best.offs)
	}
}
