package event

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
)

// IDGenerator hands out unique 16-byte event ids without locks or
// allocation: 8 random bytes chosen once per generator (so ids from different
// processes and restarts differ with overwhelming probability) followed by a
// 64-bit big-endian counter that is incremented atomically. Ids are not
// secret and not unpredictable; they only need to be unique.
type IDGenerator struct {
	prefix [8]byte
	n      atomic.Uint64
}

// NewIDGenerator returns a generator with a fresh random prefix. It panics
// only if the operating system's random source fails, as crypto/rand does.
func NewIDGenerator() *IDGenerator {
	g := &IDGenerator{}
	if _, err := rand.Read(g.prefix[:]); err != nil {
		panic("event: reading random id prefix: " + err.Error())
	}
	return g
}

// Prefix returns the random first 8 bytes every id of this generator starts
// with: the events of one process are recognised by it.
func (g *IDGenerator) Prefix() [8]byte { return g.prefix }

// Next returns a new id. It is safe for concurrent use and never allocates.
func (g *IDGenerator) Next() [16]byte {
	var id [16]byte
	copy(id[:8], g.prefix[:])
	binary.BigEndian.PutUint64(id[8:], g.n.Add(1))
	return id
}

// Topic is the default Kafka topic of usage events.
const Topic = "sluice.usage"

// Key appends the Kafka record key of an event, "service_id/app_id", to dst.
// All events of one application share a key, so they land in one partition
// and keep their order.
func Key(dst []byte, serviceID, appID string) []byte {
	dst = append(dst, serviceID...)
	dst = append(dst, '/')
	return append(dst, appID...)
}
