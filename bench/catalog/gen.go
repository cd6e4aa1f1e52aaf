package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// Shape is the generated configuration: one tenant with Services services,
// each with Plans plans of Limits limits and an equal share of Apps
// applications in user_key mode.
type Shape struct {
	Apps, Services, Plans, Limits int
}

// Names of the generated configuration, so that the measuring side can
// address what the generator wrote.
const (
	tenantID   = "bench"
	adminToken = "adm-bench-0123456789abcdef"
)

func serviceID(s int) string { return "svc-" + strconv.Itoa(s) }
func planID(p int) string    { return "plan-" + strconv.Itoa(p) }

// appID returns the id of application a of a service.
func appID(a int) string { return fmt.Sprintf("app-%07d", a) }

// userKey returns the user_key of application a of service s: 32
// characters, as 3scale's.
func userKey(s, a int) string { return fmt.Sprintf("uk%04x%026x", s, a) }

var metricNames = []string{"hits", "search", "upload", "download"}

// perService returns how many applications service s holds.
func (sh Shape) perService(s int) int {
	n := sh.Apps / sh.Services
	if s < sh.Apps%sh.Services {
		n++
	}
	return n
}

// write writes the configuration as a JSON configuration file, one
// application at a time: the generator never holds the document.
func (sh Shape) write(out io.Writer) error {
	w := bufio.NewWriterSize(out, 1<<20)
	fmt.Fprintf(w, "{\"tenants\":[{\"id\":%q,\"admin_token\":%q,\"services\":[", tenantID, adminToken)
	for s := range sh.Services {
		if s > 0 {
			w.WriteString(",")
		}
		fmt.Fprintf(w, "\n{\"id\":%q,\"tokens\":[\"st-%d-0123456789\"],\"provider_key\":\"pk-bench-0123456789\",\"default\":%v,\"metrics\":[{\"name\":\"hits\"}",
			serviceID(s), s, s == 0)
		for _, m := range metricNames[1:] {
			fmt.Fprintf(w, ",{\"name\":%q,\"parent\":\"hits\"}", m)
		}
		w.WriteString("],\"plans\":[")
		for p := range sh.Plans {
			if p > 0 {
				w.WriteString(",")
			}
			fmt.Fprintf(w, "{\"id\":%q,\"name\":%q,\"limits\":[", planID(p), planID(p))
			for l := range sh.Limits {
				if l > 0 {
					w.WriteString(",")
				}
				fmt.Fprintf(w, "{\"metric\":%q,\"period\":%q,\"max\":%d}",
					metricNames[l%len(metricNames)], []string{"minute", "hour", "day", "month"}[l/len(metricNames)%4], 1_000_000_000)
			}
			w.WriteString("]}")
		}
		w.WriteString("],\"applications\":[")
		for a := range sh.perService(s) {
			if a > 0 {
				w.WriteString(",")
			}
			fmt.Fprintf(w, "\n{\"id\":%q,\"plan\":%q,\"user_key\":%q}", appID(a), planID(a%sh.Plans), userKey(s, a))
		}
		w.WriteString("]}")
	}
	w.WriteString("]}]}\n")
	return w.Flush()
}
