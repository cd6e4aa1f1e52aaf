package event

// Kind says why an event exists.
type Kind uint8

const (
	KindAuthrep Kind = iota + 1 // an authorized authrep
	KindReport                  // one transaction of a batch report
	KindDenied                  // a denied authrep or authorize; no usage counted
)

// Usage is one metric's usage as the caller sent it (hierarchy not applied).
type Usage struct {
	Metric string
	Value  int64
	Set    bool // "#N": set the counter rather than add
	// Flat: the caller already added this value into the metric's
	// ancestors (3scale's flat_usage), so consumers do not propagate it up
	// the hierarchy again.
	Flat bool
}

// Event is one accepted (or denied) transaction: the unit of record that every
// projection (limiter counters, rollups, exports) is rebuilt from. Strings are
// ids from config, never secrets. The producer of an Event may reuse it (and its
// Usage slice) as soon as the sink's Append returns, so sinks must copy or
// encode before returning.
type Event struct {
	ID        [16]byte // unique, assigned once by the producer; stable across retries
	Kind      Kind
	TS        int64 // unix ms: when the usage happened
	Received  int64 // unix ms: when Sluice accepted it
	TenantID  string
	ServiceID string
	AppID     string
	PlanID    string
	Usage     []Usage
	Code      int16  // log[code], 0 if absent
	Reason    string // denial reason code, KindDenied only
	Region    string
	Node      string
}
