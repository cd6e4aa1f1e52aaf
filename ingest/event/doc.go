// Package event owns the usage event and its versioned binary encoding.
//
// An Event is the unit of record: one accepted (or denied) transaction.
// AppendEvent encodes it (first byte = schema version; FORMAT.md documents
// the layout with a golden vector in testdata/), Decode and Decoder read it
// back with strict bounds checks, Key builds the Kafka record key
// "service_id/app_id", IDGenerator hands out unique ids without locks, and
// MemorySink is an in-memory sink for tests and for running without Kafka.
package event
