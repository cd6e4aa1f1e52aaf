package alerts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Topic is the default Kafka topic of alerts.
const Topic = "sluice.alerts"

// Alert is one utilization alert: an application's usage of a limit reached
// Threshold percent of Max within the window starting at WindowStart. Its
// JSON form is the value of a record on the alerts topic, the body of a
// webhook call and an item of GET /api/v1/alerts.
type Alert struct {
	// ID is the alert's deterministic key (KeyOf): every node that sees the
	// crossing computes the same ID, which is how copies are recognised.
	ID          string    `json:"id"`
	TenantID    string    `json:"tenant_id"`
	ServiceID   string    `json:"service_id"`
	AppID       string    `json:"app_id"`
	Metric      string    `json:"metric"`
	Period      string    `json:"period"`
	WindowStart time.Time `json:"window_start"`
	// WindowEnd is when the window closes; zero for eternity.
	WindowEnd time.Time `json:"window_end,omitzero"`
	Threshold uint16    `json:"threshold"` // percent of Max
	Value     int64     `json:"value"`     // the counter just after the crossing
	Max       int64     `json:"max"`
	Time      time.Time `json:"time"` // when the crossing was seen
	Node      string    `json:"node,omitempty"`
}

// KeyOf returns the deterministic id of the alert for (tenant, service, app,
// metric, period, window start, threshold): 32 hex digits of the SHA-256 of
// those fields, each followed by a zero byte (no id or name contains one).
func KeyOf(tenant, service, app, metric, period string, windowStart int64, threshold uint16) string {
	h := sha256.New()
	for _, s := range []string{tenant, service, app, metric, period, strconv.FormatInt(windowStart, 10), strconv.Itoa(int(threshold))} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// Valid reports whether a decoded alert is whole and its ID is its key.
func (a *Alert) Valid() error {
	switch {
	case a.TenantID == "" || a.ServiceID == "" || a.AppID == "" || a.Metric == "" || a.Period == "":
		return fmt.Errorf("alert %q: missing fields", a.ID)
	case a.ID != KeyOf(a.TenantID, a.ServiceID, a.AppID, a.Metric, a.Period, a.WindowStart.Unix(), a.Threshold):
		return fmt.Errorf("alert %q: id is not the key of its fields", a.ID)
	}
	return nil
}

// Decode parses one alert record value and checks it.
func Decode(b []byte) (*Alert, error) {
	var a Alert
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("alerts: decode: %w", err)
	}
	if err := a.Valid(); err != nil {
		return nil, fmt.Errorf("alerts: decode: %w", err)
	}
	return &a, nil
}
