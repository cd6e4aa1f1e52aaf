package load

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Scenario is a load scenario read from a YAML file: which requests to send,
// in what proportions, for which applications.
type Scenario struct {
	// Name identifies the scenario in reports.
	Name string `yaml:"name"`
	// Description says what it measures.
	Description string `yaml:"description"`
	// Apps is how many applications the requests spread over; {app} in a
	// request expands to AppKey with {i} replaced by the application's index
	// in [0, Apps).
	Apps   int    `yaml:"apps"`
	AppKey string `yaml:"app_key"`
	// Distribution picks the application of each {app}: "uniform" (the
	// default) or "zipf" (a few hot applications; ZipfS > 1 is the
	// exponent, default 1.1).
	Distribution string  `yaml:"distribution"`
	ZipfS        float64 `yaml:"zipf_s"`
	// Vars are substituted for {name} in requests.
	Vars map[string]string `yaml:"vars"`
	// MinTargets is the least number of targets the scenario needs (a
	// cluster scenario spreads its calls over several API nodes).
	MinTargets int `yaml:"min_targets"`
	// Requests are the kinds of request sent, each picked with probability
	// weight / sum of weights.
	Requests []RequestSpec `yaml:"requests"`
}

// RequestSpec is one kind of request of a scenario.
type RequestSpec struct {
	Name        string `yaml:"name"`
	Weight      int    `yaml:"weight"`
	Method      string `yaml:"method"`
	Path        string `yaml:"path"` // path and query, with placeholders
	ContentType string `yaml:"content_type"`
	// Body may hold one "{repeat N}...{end}" block, rendered N times with
	// {n} the repetition's index (a batch report of N transactions).
	Body string `yaml:"body"`
	// Transactions counts what one request carries (1 unless a batch).
	Transactions int `yaml:"transactions"`
	// Expect lists the statuses that count as success (default 200).
	Expect []int `yaml:"expect"`
}

// Limits on what a scenario file may ask for, so that a mistyped file fails
// early instead of exhausting memory.
const (
	maxApps     = 100_000_000
	maxRequests = 64
	maxRepeat   = 10_000
	maxFileSize = 1 << 20
)

// ErrScenario is wrapped by every error about a scenario's content.
var ErrScenario = errors.New("invalid scenario")

// LoadScenario reads and checks a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading scenario: %w", err)
	}
	s, err := ParseScenario(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseScenario parses and checks a scenario's YAML, filling defaults.
func ParseScenario(b []byte) (*Scenario, error) {
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrScenario, maxFileSize)
	}
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScenario, err)
	}
	if s.Name == "" {
		return nil, fmt.Errorf("%w: no name", ErrScenario)
	}
	if s.Apps <= 0 {
		s.Apps = 1
	}
	if s.Apps > maxApps {
		return nil, fmt.Errorf("%w: apps %d > %d", ErrScenario, s.Apps, maxApps)
	}
	switch s.Distribution {
	case "":
		s.Distribution = "uniform"
	case "uniform":
	case "zipf":
		if s.ZipfS == 0 {
			s.ZipfS = 1.1
		}
		if !(s.ZipfS > 1) || math.IsInf(s.ZipfS, 0) {
			return nil, fmt.Errorf("%w: zipf_s must be a number above 1", ErrScenario)
		}
	default:
		return nil, fmt.Errorf("%w: distribution %q: want uniform or zipf", ErrScenario, s.Distribution)
	}
	if len(s.Requests) == 0 || len(s.Requests) > maxRequests {
		return nil, fmt.Errorf("%w: want 1 to %d requests, have %d", ErrScenario, maxRequests, len(s.Requests))
	}
	for i := range s.Requests {
		r := &s.Requests[i]
		if r.Name == "" {
			r.Name = fmt.Sprintf("request%d", i)
		}
		if r.Weight == 0 {
			r.Weight = 1
		}
		if r.Weight < 0 || r.Weight > 1_000_000 {
			return nil, fmt.Errorf("%w: request %s: weight %d outside 1..1000000", ErrScenario, r.Name, r.Weight)
		}
		if r.Method == "" {
			r.Method = "GET"
		}
		if r.Method != "GET" && r.Method != "POST" {
			return nil, fmt.Errorf("%w: request %s: method %q: want GET or POST", ErrScenario, r.Name, r.Method)
		}
		if !strings.HasPrefix(r.Path, "/") {
			return nil, fmt.Errorf("%w: request %s: path must start with /", ErrScenario, r.Name)
		}
		if r.Transactions == 0 {
			r.Transactions = 1
		}
		if r.Transactions < 0 || r.Transactions > maxRepeat {
			return nil, fmt.Errorf("%w: request %s: transactions %d outside 1..%d", ErrScenario, r.Name, r.Transactions, maxRepeat)
		}
		if len(r.Expect) == 0 {
			r.Expect = []int{200}
		}
		if _, _, _, _, err := splitRepeat(r.Body); err != nil {
			return nil, fmt.Errorf("%w: request %s: %w", ErrScenario, r.Name, err)
		}
	}
	return &s, nil
}

// splitRepeat splits a body around its "{repeat N}...{end}" block.
func splitRepeat(body string) (head, block, tail string, n int, err error) {
	i := strings.Index(body, "{repeat ")
	if i < 0 {
		return body, "", "", 0, nil
	}
	rest := body[i+len("{repeat "):]
	j := strings.IndexByte(rest, '}')
	if j < 0 {
		return "", "", "", 0, errors.New("unterminated {repeat N}")
	}
	n, err = strconv.Atoi(rest[:j])
	if err != nil || n < 1 || n > maxRepeat {
		return "", "", "", 0, fmt.Errorf("{repeat %s}: want a count in 1..%d", rest[:j], maxRepeat)
	}
	rest = rest[j+1:]
	k := strings.Index(rest, "{end}")
	if k < 0 {
		return "", "", "", 0, errors.New("{repeat N} without {end}")
	}
	return body[:i], rest[:k], rest[k+len("{end}"):], n, nil
}

// prepared is one rendered request, ready to send.
type prepared struct {
	kind int // index in Scenario.Requests
	uri  []byte
	body []byte
}

// picker draws application indexes from the scenario's distribution.
type picker struct {
	r    *rand.Rand
	zipf *rand.Zipf
	n    uint64
}

func newPicker(s *Scenario, seed uint64) *picker {
	p := &picker{r: rand.New(rand.NewPCG(seed, 0x5eed)), n: uint64(s.Apps)}
	if s.Distribution == "zipf" {
		p.zipf = rand.NewZipf(p.r, s.ZipfS, 1, p.n-1)
	}
	return p
}

func (p *picker) next() uint64 {
	if p.zipf != nil {
		return p.zipf.Uint64()
	}
	return p.r.Uint64N(p.n)
}

// render expands the placeholders of one request, drawing a fresh
// application for every {app}.
func (s *Scenario) render(kind int, p *picker) prepared {
	r := &s.Requests[kind]
	out := prepared{kind: kind, uri: s.expand(nil, r.Path, p, -1)}
	if r.Body != "" {
		head, block, tail, n, _ := splitRepeat(r.Body) // checked by ParseScenario
		b := s.expand(nil, head, p, -1)
		for i := range n {
			b = s.expand(b, block, p, i)
		}
		out.body = s.expand(b, tail, p, -1)
	}
	return out
}

// expand appends t to dst with {app}, {n} (when n >= 0) and {var}
// replaced. Unknown placeholders stay as they are, and braces around
// anything but a name (JSON) are the payload's own.
func (s *Scenario) expand(dst []byte, t string, p *picker, n int) []byte {
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			return append(dst, t...)
		}
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			return append(dst, t...)
		}
		dst = append(dst, t[:i]...)
		name := t[i+1 : i+j]
		if !isName(name) {
			// A brace of the payload (JSON), not a placeholder.
			dst = append(dst, '{')
			t = t[i+1:]
			continue
		}
		switch v, ok := s.Vars[name]; {
		case name == "app":
			dst = appendApp(dst, s.AppKey, p.next())
		case name == "n" && n >= 0:
			dst = strconv.AppendInt(dst, int64(n), 10)
		case ok:
			dst = append(dst, v...)
		default:
			dst = append(dst, t[i:i+j+1]...)
		}
		t = t[i+j+1:]
	}
}

// isName reports whether s can name a placeholder: letters, digits, '_'.
func isName(s string) bool {
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return s != ""
}

// appendApp appends the credential of application i: key with {i}
// replaced, or the bare index when key is empty.
func appendApp(dst []byte, key string, i uint64) []byte {
	if key == "" {
		return strconv.AppendUint(dst, i, 10)
	}
	before, after, ok := strings.Cut(key, "{i}")
	dst = append(dst, before...)
	if ok {
		dst = strconv.AppendUint(dst, i, 10)
		dst = append(dst, after...)
	}
	return dst
}
