package smapi

import (
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/limiter"
)

// ContentType is the media type of every Service Management API answer.
const ContentType = "application/vnd.3scale-v2.0+xml"

// TimeLayout is 3scale's `%Y-%m-%d %H:%M:%S %z`, always written in UTC.
const TimeLayout = "2006-01-02 15:04:05 -0700"

const xmlHeader = `<?xml version="1.0" encoding="UTF-8"?>`

// MaxListedAppKeys bounds the keys the list_app_keys extension returns.
const MaxListedAppKeys = 256

// Status is the content of a <status> answer of authorize, authrep and
// their oauth variants.
type Status struct {
	Authorized bool
	// Reason is the unescaped denial text; written only when !Authorized.
	Reason []byte
	// App is the application the answer is about (its plan, metric names and,
	// for OAuth and list_app_keys, its id, keys and redirect URL).
	App *catalog.App
	// Reports are the limiter's reports, one per limit of App's plan.
	Reports []limiter.Report
	// OAuth adds <application> with id, first key and redirect URL.
	OAuth bool
	// RedirectURI names the redirect URL element <redirect_uri> instead of
	// <redirect_url>: 3scale answers in the call's own word when it sent
	// redirect_uri (and no redirect_url).
	RedirectURI bool
	// Hierarchy appends the service's metric hierarchy.
	Hierarchy bool
	// ListAppKeys appends the application's keys (at most MaxListedAppKeys).
	ListAppKeys bool
}

// AppendStatus appends s as a 3scale <status> document to dst. It does not
// allocate when dst has room.
func AppendStatus(dst []byte, s *Status) []byte {
	app := s.App
	svc := app.Service
	dst = append(dst, xmlHeader...)
	dst = append(dst, "<status><authorized>"...)
	if s.Authorized {
		dst = append(dst, "true</authorized>"...)
	} else {
		dst = append(dst, "false</authorized><reason>"...)
		dst = appendEscaped(dst, s.Reason)
		dst = append(dst, "</reason>"...)
	}
	if s.OAuth {
		dst = append(dst, "<application><id>"...)
		dst = appendEscapedString(dst, app.ID)
		dst = append(dst, "</id><key>"...)
		if len(app.Keys) > 0 {
			dst = appendEscapedString(dst, app.Keys[0])
		}
		if s.RedirectURI {
			dst = append(dst, "</key><redirect_uri>"...)
			dst = appendEscapedString(dst, app.RedirectURL)
			dst = append(dst, "</redirect_uri></application>"...)
		} else {
			dst = append(dst, "</key><redirect_url>"...)
			dst = appendEscapedString(dst, app.RedirectURL)
			dst = append(dst, "</redirect_url></application>"...)
		}
	}
	dst = append(dst, "<plan>"...)
	if plan := app.Plan(); plan != nil {
		dst = appendEscapedString(dst, plan.Name)
	}
	dst = append(dst, "</plan>"...)
	if len(s.Reports) > 0 {
		dst = append(dst, "<usage_reports>"...)
		for i := range s.Reports {
			dst = appendUsageReport(dst, svc, &s.Reports[i])
		}
		dst = append(dst, "</usage_reports>"...)
	}
	if s.Hierarchy {
		dst = appendHierarchy(dst, svc)
	}
	if s.ListAppKeys {
		dst = append(dst, `<app_keys app="`...)
		dst = appendEscapedString(dst, app.ID)
		dst = append(dst, `" svc="`...)
		dst = appendEscapedString(dst, svc.ID)
		dst = append(dst, `">`...)
		for i, k := range app.Keys {
			if i == MaxListedAppKeys {
				break
			}
			dst = append(dst, `<key id="`...)
			dst = appendEscapedString(dst, k)
			dst = append(dst, `"/>`...)
		}
		dst = append(dst, "</app_keys>"...)
	}
	return append(dst, "</status>"...)
}

func appendUsageReport(dst []byte, svc *catalog.Service, r *limiter.Report) []byte {
	dst = append(dst, `<usage_report metric="`...)
	dst = appendEscapedString(dst, svc.MetricName(r.Limit.Metric))
	dst = append(dst, `" period="`...)
	dst = r.Limit.Period.AppendText(dst)
	dst = append(dst, '"')
	if r.Exceeded {
		dst = append(dst, ` exceeded="true"`...)
	}
	dst = append(dst, '>')
	if r.Limit.Period.Unit != limiter.Eternity {
		dst = append(dst, "<period_start>"...)
		dst = appendTime(dst, r.Start)
		dst = append(dst, "</period_start><period_end>"...)
		dst = appendTime(dst, r.End)
		dst = append(dst, "</period_end>"...)
	}
	dst = append(dst, "<max_value>"...)
	dst = strconv.AppendInt(dst, r.Limit.Max, 10)
	dst = append(dst, "</max_value><current_value>"...)
	dst = strconv.AppendInt(dst, r.Current, 10)
	return append(dst, "</current_value></usage_report>"...)
}

// appendHierarchy lists every metric with children, in declared order.
func appendHierarchy(dst []byte, svc *catalog.Service) []byte {
	dst = append(dst, "<hierarchy>"...)
	for m, children := range svc.Children {
		if len(children) == 0 || m >= len(svc.Metrics) {
			continue
		}
		dst = append(dst, `<metric name="`...)
		dst = appendEscapedString(dst, svc.Metrics[m].Name)
		dst = append(dst, `" children="`...)
		for i, c := range children {
			if i > 0 {
				dst = append(dst, ' ')
			}
			dst = appendEscapedString(dst, svc.MetricName(c))
		}
		dst = append(dst, `"/>`...)
	}
	return append(dst, "</hierarchy>"...)
}

// AppendError appends a 3scale <error code="..."> document for c to dst.
func appendError(dst []byte, c errCode, arg, arg2 []byte) []byte {
	dst = append(dst, xmlHeader...)
	dst = append(dst, `<error code="`...)
	dst = append(dst, c.String()...)
	dst = append(dst, `">`...)
	start := len(dst)
	dst = appendMessage(dst, c, arg, arg2)
	// Escape in place: the message is built unescaped (it quotes caller
	// input), so re-encode the tail through a second append.
	dst = escapeTail(dst, start)
	return append(dst, "</error>"...)
}

// escapeTail XML-escapes dst[start:] in place, growing dst as needed.
func escapeTail(dst []byte, start int) []byte {
	extra := 0
	for _, c := range dst[start:] {
		if e := escapeOf(c, false); e != "" {
			extra += len(e) - 1
		}
	}
	if extra == 0 {
		return dst
	}
	n := len(dst)
	for i := 0; i < extra; i++ {
		dst = append(dst, 0)
	}
	// Walk backwards so unread bytes are never overwritten.
	w := len(dst)
	for r := n - 1; r >= start; r-- {
		c := dst[r]
		if e := escapeOf(c, false); e != "" {
			w -= len(e)
			copy(dst[w:], e)
		} else {
			w--
			dst[w] = c
		}
	}
	return dst
}

// escapeOf returns the XML escape of c in text content (attr false: quotes
// stay literal, as 3scale writes `id="x"` inside messages) or in an attribute
// value (attr true), or "" when c stands for itself.
func escapeOf(c byte, attr bool) string {
	switch c {
	case '<':
		return "&lt;"
	case '>':
		return "&gt;"
	case '&':
		return "&amp;"
	case '"':
		if attr {
			return "&quot;"
		}
		return ""
	}
	if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
		return "\uFFFD" // not representable in XML 1.0
	}
	return ""
}

// appendEscaped appends text content.
func appendEscaped(dst, s []byte) []byte {
	for _, c := range s {
		if e := escapeOf(c, false); e != "" {
			dst = append(dst, e...)
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// appendEscapedString appends s escaped for text content and attribute
// values alike.
func appendEscapedString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if e := escapeOf(c, true); e != "" {
			dst = append(dst, e...)
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// appendTime writes unix seconds in TimeLayout, UTC. Digits are written by
// hand: time.AppendFormat's layout interpretation was a quarter of the
// authrep hot path.
func appendTime(dst []byte, sec int64) []byte {
	t := time.Unix(sec, 0).UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(dst, TimeLayout)
	}
	h, mi, s := t.Clock()
	dst = append(dst, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-')
	dst = append2(dst, int(mo), '-')
	dst = append2(dst, d, ' ')
	dst = append2(dst, h, ':')
	dst = append2(dst, mi, ':')
	dst = append2(dst, s, ' ')
	return append(dst, "+0000"...)
}

func append2(dst []byte, v int, sep byte) []byte {
	return append(dst, byte('0'+v/10), byte('0'+v%10), sep)
}
