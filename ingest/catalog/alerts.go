package catalog

import (
	"net/url"
	"slices"
)

// DefaultAlertThresholds are 3scale's utilization alert levels, in percent of
// a limit: a service without alert_thresholds alerts at these.
var DefaultAlertThresholds = []uint16{50, 80, 90, 100, 120, 150, 200, 300}

// Bounds of the alert settings.
const (
	MaxAlertThresholds  = 16    // thresholds per service
	MaxAlertThreshold   = 10000 // percent of a limit
	MaxWebhookURLLen    = 2048
	MinWebhookSecretLen = 16 // bytes: an HMAC key shorter than this is guessable
)

// alertThresholds returns the validated percentages as the sorted set the
// alerts detector walks, or the defaults when there are none.
func alertThresholds(pct []int64) []uint16 {
	if len(pct) == 0 {
		return DefaultAlertThresholds
	}
	out := make([]uint16, 0, len(pct))
	for _, p := range pct {
		out = append(out, uint16(p))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// alertThresholds checks a service's alert_thresholds.
func (v *validator) alertThresholdList(p string, pct []int64) {
	if len(pct) > MaxAlertThresholds {
		v.add(p, "more than %d thresholds", MaxAlertThresholds)
		return
	}
	seen := make(map[int64]bool, len(pct))
	for i, x := range pct {
		switch {
		case x < 1 || x > MaxAlertThreshold:
			v.add(index(p, i), "threshold %d out of range: want a percentage from 1 to %d", x, MaxAlertThreshold)
		case seen[x]:
			v.add(index(p, i), "duplicate threshold %d", x)
		}
		seen[x] = true
	}
}

// webhook checks a tenant's webhook_url and webhook_secret. The secret's
// value never appears in a problem.
func (v *validator) webhook(t *TenantSpec, p string) {
	up, sp := at(p, t, &t.WebhookURL), at(p, t, &t.WebhookSecret)
	if t.WebhookURL == "" {
		if t.WebhookSecret != "" {
			v.add(sp, "set without %s", FieldName(t, &t.WebhookURL))
		}
		return
	}
	u, err := url.Parse(t.WebhookURL)
	switch {
	case len(t.WebhookURL) > MaxWebhookURLLen:
		v.add(up, "longer than %d bytes", MaxWebhookURLLen)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "":
		v.add(up, "must be an absolute http or https URL without user info or fragment")
	}
	switch {
	case t.WebhookSecret == "":
		v.add(sp, "required with %s: receivers verify the signature with it", FieldName(t, &t.WebhookURL))
	case len(t.WebhookSecret) < MinWebhookSecretLen:
		v.add(sp, "shorter than %d bytes", MinWebhookSecretLen)
	default:
		v.credential(sp, t.WebhookSecret)
	}
}
