package event

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// MemorySink is an in-memory event sink for tests and for running the API
// before Kafka is wired. Append encodes each event (so the caller may reuse
// its Event at once, as the sink contract requires) into one growing buffer;
// nothing is ever evicted. It is safe for concurrent use.
type MemorySink struct {
	mu  sync.Mutex
	buf []byte // frames: uvarint length + AppendEvent encoding
	n   int
}

// Append records e. It fails only if Validate(e) does; it allocates only
// when the internal buffer grows.
func (s *MemorySink) Append(e *Event) error {
	if err := Validate(e); err != nil {
		return err
	}
	s.mu.Lock()
	s.buf = binary.AppendUvarint(s.buf, uint64(EncodedLen(e)))
	s.buf = AppendEvent(s.buf, e)
	s.n++
	s.mu.Unlock()
	return nil
}

// Len returns how many events have been appended.
func (s *MemorySink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Events decodes and returns copies of all appended events, in order.
func (s *MemorySink) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Event, 0, s.n)
	for b := s.buf; len(b) > 0; {
		n, k := binary.Uvarint(b)
		var e Event
		if k <= 0 || n > uint64(len(b)-k) {
			panic("event: MemorySink buffer corrupt") // impossible: only Append writes it
		}
		if err := Decode(b[k:k+int(n)], &e); err != nil {
			panic(fmt.Sprintf("event: MemorySink holds an undecodable event: %v", err))
		}
		out = append(out, e)
		b = b[k+int(n):]
	}
	return out
}

// Reset forgets all appended events, keeping the buffer's capacity.
func (s *MemorySink) Reset() {
	s.mu.Lock()
	s.buf = s.buf[:0]
	s.n = 0
	s.mu.Unlock()
}
