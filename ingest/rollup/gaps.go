package rollup

import "sync"

// gaps finds records that vanished from Kafka before they were rolled up.
// Sluice's producers are idempotent and not transactional, so a partition's
// offsets are dense: the next record the rollup sees after offset o is o+1.
// A record past the expected offset means the ones between were deleted
// (time or size retention, or DeleteRecords) while they were not yet in
// ClickHouse: on assignment the consumer asked for the offset ClickHouse
// needs, and Kafka answered from its log start instead; or the log start
// moved past the consumer's position mid-session. Their usage is lost for
// the rollups, so each such gap is counted (Stats.Missing) and logged as an
// error rather than passed over. (A foreign transactional producer leaves
// one offset per commit marker, which shows up here as small gaps.)
type gaps struct {
	mu   sync.Mutex
	next map[int32]int64 // partition -> offset of the next record expected
}

// expect sets where partition kp resumes: the offset the rollup asked
// Kafka for (0: the start of the log, which ClickHouse has never seen).
func (g *gaps) expect(kp int32, off int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.next == nil {
		g.next = map[int32]int64{}
	}
	g.next[kp] = off
}

// forget drops partitions this member no longer consumes.
func (g *gaps) forget(kps []int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, kp := range kps {
		delete(g.next, kp)
	}
}

// see records that a record at offset off of kp arrived. missing > 0: that
// many offsets from from on were expected and never came. behind: the record
// is older than expected, so Kafka's log is behind ClickHouse's markers (the
// topic was deleted and created again, or the broker lost acknowledged
// records); the writer skips such records as already counted. A partition
// without an expectation reports nothing.
func (g *gaps) see(kp int32, off int64) (missing, from int64, behind bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	want, ok := g.next[kp]
	if !ok {
		return 0, 0, false
	}
	g.next[kp] = off + 1
	switch {
	case off > want:
		return off - want, want, false
	case off < want:
		return 0, 0, true
	}
	return 0, 0, false
}
