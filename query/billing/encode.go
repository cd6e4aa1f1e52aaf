package billing

import (
	"strconv"
	"unicode/utf8"
)

// encoder appends the export's bytes in one format. Append-style so that a
// row costs no allocation: the caller owns and reuses the buffer.
type encoder struct {
	format Format
	month  string
}

// begin appends what precedes the first row: the CSV header, or nothing
// (JSON's opening bracket waits for end or the first row, so an empty
// export is "[]").
func (e *encoder) begin(dst []byte) []byte {
	if e.format == CSV {
		for i, c := range Columns {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, c...)
		}
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// row appends one row; first says whether it is the first.
func (e *encoder) row(dst []byte, r *Row, first bool) []byte {
	switch e.format {
	case CSV:
		dst = appendCSVField(dst, e.month)
		for _, f := range [...]string{r.TenantID, r.ServiceID, r.AppID, r.PlanID, r.Metric} {
			dst = append(dst, ',')
			dst = appendCSVField(dst, f)
		}
		dst = append(dst, ',')
		dst = strconv.AppendInt(dst, r.Value, 10)
		return append(dst, '\r', '\n')
	case JSON:
		if first {
			dst = append(dst, "[\n"...)
		} else {
			dst = append(dst, ",\n"...)
		}
		return e.object(dst, r)
	default: // NDJSON
		dst = e.object(dst, r)
		return append(dst, '\n')
	}
}

// end appends what follows the last row; empty says there was none.
func (e *encoder) end(dst []byte, empty bool) []byte {
	if e.format != JSON {
		return dst
	}
	if empty {
		return append(dst, "[]\n"...)
	}
	return append(dst, "\n]\n"...)
}

func (e *encoder) object(dst []byte, r *Row) []byte {
	dst = append(dst, `{"month":`...)
	dst = appendJSONString(dst, e.month)
	dst = append(dst, `,"tenant_id":`...)
	dst = appendJSONString(dst, r.TenantID)
	dst = append(dst, `,"service_id":`...)
	dst = appendJSONString(dst, r.ServiceID)
	dst = append(dst, `,"app_id":`...)
	dst = appendJSONString(dst, r.AppID)
	dst = append(dst, `,"plan_id":`...)
	dst = appendJSONString(dst, r.PlanID)
	dst = append(dst, `,"metric":`...)
	dst = appendJSONString(dst, r.Metric)
	dst = append(dst, `,"value":`...)
	dst = strconv.AppendInt(dst, r.Value, 10)
	return append(dst, '}')
}

// appendCSVField appends s as one RFC 4180 field: quoted, with inner quotes
// doubled, when it holds a comma, a quote, CR or LF, or begins with a space
// (which some readers would trim); as is otherwise.
func appendCSVField(dst []byte, s string) []byte {
	quote := s != "" && s[0] == ' '
	for i := 0; i < len(s) && !quote; i++ {
		switch s[i] {
		case ',', '"', '\r', '\n':
			quote = true
		}
	}
	if !quote {
		return append(dst, s...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD
// (as encoding/json does); control characters, and U+2028/U+2029 for
// JavaScript consumers, are escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
