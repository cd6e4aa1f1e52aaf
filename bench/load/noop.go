package load

import (
	"fmt"
	"net"

	"github.com/valyala/fasthttp"
)

// noopBody is the size and shape of a 3scale authrep answer with limit
// reports, so that the baseline moves as many bytes as a real answer.
const noopBody = `<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>Basic</plan>` +
	`<usage_reports><usage_report metric="hits" period="minute"><period_start>2026-01-01 00:00:00 +0000</period_start>` +
	`<period_end>2026-01-01 00:01:00 +0000</period_end><max_value>1000000000</max_value><current_value>1</current_value>` +
	`</usage_report></usage_reports></status>`

// NoopHandler answers every request with 200 and a fixed 3scale-sized XML
// body without looking at it: the ceiling a fasthttp server reaches on the
// machine, which every throughput is compared with.
func NoopHandler(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/vnd.3scale-v2.0+xml")
	ctx.SetBodyString(noopBody)
}

// StartNoop serves NoopHandler on addr ("127.0.0.1:0" for any port) until
// the returned stop is called, and returns the base URL.
func StartNoop(addr string) (base string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("noop baseline: %w", err)
	}
	srv := &fasthttp.Server{Handler: NoopHandler, Name: "noop"}
	go srv.Serve(ln) //nolint:errcheck // ends with the listener
	return "http://" + ln.Addr().String(), func() { srv.Shutdown() }, nil
}
