package load

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Report is a set of runs measured together, written as JSON and Markdown.
type Report struct {
	// Machine, Commit, When and LoadAverage say where and when it was
	// measured; Commands how to measure it again.
	Machine     string   `json:"machine"`
	Commit      string   `json:"commit"`
	When        string   `json:"when"`
	LoadAverage string   `json:"load_average"`
	Commands    []string `json:"commands"`
	// Baseline is the Label of the runs every other run's throughput is
	// compared with: the same scenario, closed loop, against a server that
	// does nothing.
	Baseline string    `json:"baseline"`
	Results  []*Result `json:"results"`
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	return nil
}

// Ratio returns res's throughput over the baseline's for the same scenario
// (closed loop), or 0 when there is none.
func (r *Report) Ratio(res *Result) float64 {
	for _, b := range r.Results {
		if b.Label == r.Baseline && b.Scenario == res.Scenario && b.Mode == "closed" && b.Throughput > 0 {
			return res.Throughput / b.Throughput
		}
	}
	return 0
}

// WriteMarkdown writes the runs as two Markdown tables: closed-loop
// saturation (throughput and its ratio to the baseline) and open-loop
// latency at fixed offered rates.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s. Commit: %s. Measured: %s, load average %s.\n\n", r.Machine, r.Commit, r.When, r.LoadAverage)
	if len(r.Commands) > 0 {
		b.WriteString("```\n")
		for _, c := range r.Commands {
			b.WriteString(c + "\n")
		}
		b.WriteString("```\n\n")
	}
	closed, open := split(r.Results)
	if len(closed) > 0 {
		b.WriteString("Saturation (closed loop, every connection sends its next request on the answer):\n\n")
		b.WriteString("| scenario | target | conns | requests/s | transactions/s | ratio to " + r.Baseline + " | p50 µs | p99 µs | p99.9 µs | errors | statuses |\n")
		b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, x := range closed {
			ratio := "—"
			if q := r.Ratio(x); q > 0 && x.Label != r.Baseline {
				ratio = strconv.FormatFloat(q, 'f', 2, 64)
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %d | %s |\n", x.Scenario, x.Label, x.Conns,
				thousands(x.Throughput), thousands(x.TxThroughput), ratio,
				num(x.Latency.P50), num(x.Latency.P99), num(x.Latency.P999), x.Errors, statuses(x.Statuses))
		}
		b.WriteString("\n")
	}
	if len(open) > 0 {
		b.WriteString("Latency at a constant offered rate (open loop; latency from each request's due time):\n\n")
		b.WriteString("| scenario | target | offered/s | answered/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | missed | errors |\n")
		b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, x := range open {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", x.Scenario, x.Label,
				thousands(x.OfferedRate), thousands(x.Throughput), num(x.Latency.P50), num(x.Latency.P90),
				num(x.Latency.P99), num(x.Latency.P999), num(x.Latency.Max), thousands(float64(x.Missed)), thousands(float64(x.Errors)))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	return nil
}

func split(rs []*Result) (closed, open []*Result) {
	for _, x := range rs {
		if x.Mode == "open" {
			open = append(open, x)
		} else {
			closed = append(closed, x)
		}
	}
	return closed, open
}

// statuses renders a status count map in status order: "200: 10, 409: 2".
func statuses(m map[int]int64) string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		name := strconv.Itoa(k)
		if k == 0 {
			name = "transport error"
		}
		parts[i] = name + ": " + thousands(float64(m[k]))
	}
	return strings.Join(parts, ", ")
}

// thousands renders v rounded to an integer with thousands separators.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// num renders a latency in µs: one decimal below 100, none above.
func num(v float64) string {
	if v < 100 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return thousands(v)
}
