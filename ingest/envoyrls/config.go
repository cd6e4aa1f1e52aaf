package envoyrls

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/limiter"
)

// Bounds of a configuration directory. They are far above what Envoy
// ratelimit configurations hold in practice and keep a stray file (a log, a
// dump) from taking the process's memory.
const (
	MaxFiles         = 1000    // *.yaml files in the directory
	MaxFileBytes     = 4 << 20 // bytes of one file
	MaxDepth         = 16      // nesting of descriptors
	MaxRulesByDomain = 10000   // descriptors with a rate_limit in one domain
)

// ErrConfig is wrapped by every error of Load and Parse.
var ErrConfig = errors.New("envoy ratelimit config")

// Config is a loaded set of Envoy ratelimit configuration files: domains,
// each a tree of descriptors. It is immutable once built and safe for
// concurrent use.
type Config struct {
	domains map[string]*domain
	// Files are the names of the files it was loaded from, sorted.
	Files []string
}

// domain is one domain's descriptor tree.
type domain struct {
	name  string
	root  node
	rules []*rule // every descriptor with a rate_limit, in file order
}

// node is one level of the descriptor tree: the descriptors below it by
// "key_value" (or "key" when the config gives no value), and the wildcard
// ones in file order.
type node struct {
	children map[string]*node
	wild     []wildEntry
	rule     *rule // nil: no rate_limit at this descriptor
	share    bool  // share_threshold: every value the wildcard matches shares one counter
	pattern  string
}

// wildEntry is a "key_value*" child, its pattern cut at the stars once.
type wildEntry struct {
	key   string
	parts []string
}

// rule is a descriptor's rate_limit.
type rule struct {
	// path names the descriptor within its domain the way Envoy ratelimit's
	// statistics do ("key1_value1.key2").
	path string
	// metric is path as a Sluice metric name (MetricName): the metric of
	// its usage events.
	metric    string
	rpu       uint32 // requests_per_unit
	unit      unitSpec
	unlimited bool
	shadow    bool
	quota     bool
	detailed  bool
	name      string
	replaces  []string
	// levels says, per entry of the descriptors that reach this rule, how
	// the configuration matches it: what Restore needs to turn an
	// application id back into the counter's identity.
	levels []level
}

// level is one entry of the path to a rule: fixed (key and value), a
// wildcard value (shared: by its pattern), or the key alone.
type level struct {
	kind    byte // 'f' fixed, 'w' wildcard, 'k' key alone
	pattern string
}

// unitSpec is a rate_limit's unit: Envoy's enum for the response and the
// limiter's period for the counter.
type unitSpec struct {
	wire   int32 // RateLimitResponse_RateLimit_Unit
	period limiter.Period
}

// Envoy's RateLimitResponse.RateLimit.Unit values.
const (
	unitUnknown = 0
	unitSecond  = 1
	unitMinute  = 2
	unitHour    = 3
	unitDay     = 4
	unitMonth   = 5
	unitYear    = 6
	unitWeek    = 7
)

// parseUnit reads a rate_limit unit: Envoy's names (any case) or Sluice's
// "sliding:<duration>". A sliding window reports, on the wire, the shortest
// Envoy unit at least as long as it, so that a client computing a window
// from it never under-estimates it.
func parseUnit(s string) (unitSpec, error) {
	if strings.HasPrefix(s, "sliding:") {
		p, err := limiter.ParsePeriod(s)
		if err != nil {
			return unitSpec{}, err
		}
		w := int32(unitDay)
		switch {
		case p.Window <= time.Second:
			w = unitSecond
		case p.Window <= time.Minute:
			w = unitMinute
		case p.Window <= time.Hour:
			w = unitHour
		}
		return unitSpec{wire: w, period: p}, nil
	}
	switch strings.ToLower(s) {
	case "second":
		return unitSpec{unitSecond, limiter.Period{Unit: limiter.Second}}, nil
	case "minute":
		return unitSpec{unitMinute, limiter.Period{Unit: limiter.Minute}}, nil
	case "hour":
		return unitSpec{unitHour, limiter.Period{Unit: limiter.Hour}}, nil
	case "day":
		return unitSpec{unitDay, limiter.Period{Unit: limiter.Day}}, nil
	case "week":
		return unitSpec{unitWeek, limiter.Period{Unit: limiter.Week}}, nil
	case "month":
		return unitSpec{unitMonth, limiter.Period{Unit: limiter.Month}}, nil
	case "year":
		return unitSpec{unitYear, limiter.Period{Unit: limiter.Year}}, nil
	}
	return unitSpec{}, fmt.Errorf("invalid rate limit unit %q (want second, minute, hour, day, week, month, year or sliding:<duration>)", s)
}

// The YAML shapes. Unknown keys are refused, as Envoy ratelimit refuses
// them: a misspelt "shadow_mode" must not silently enforce a limit.
type yamlRoot struct {
	Domain      string           `yaml:"domain"`
	Descriptors []yamlDescriptor `yaml:"descriptors"`
}

type yamlDescriptor struct {
	Key            string           `yaml:"key"`
	Value          string           `yaml:"value"`
	RateLimit      *yamlRateLimit   `yaml:"rate_limit"`
	Descriptors    []yamlDescriptor `yaml:"descriptors"`
	ShadowMode     bool             `yaml:"shadow_mode"`
	QuotaMode      bool             `yaml:"quota_mode"`
	DetailedMetric bool             `yaml:"detailed_metric"`
	ValueToMetric  bool             `yaml:"value_to_metric"`
	ShareThreshold bool             `yaml:"share_threshold"`
	Metadata       map[string]any   `yaml:"metadata"`
}

type yamlRateLimit struct {
	RequestsPerUnit uint32         `yaml:"requests_per_unit"`
	Unit            string         `yaml:"unit"`
	Unlimited       bool           `yaml:"unlimited"`
	Name            string         `yaml:"name"`
	Replaces        []yamlReplaces `yaml:"replaces"`
}

type yamlReplaces struct {
	Name string `yaml:"name"`
}

// File is one configuration file's name and content.
type File struct {
	Name string
	Data []byte
}

// ReadDir reads every *.yaml file of dir (not its subdirectories), sorted
// by name, within MaxFiles and MaxFileBytes.
func ReadDir(dir string) ([]File, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, dir, err)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(names) > MaxFiles {
		return nil, fmt.Errorf("%w: %s: %d files, at most %d", ErrConfig, dir, len(names), MaxFiles)
	}
	sort.Strings(names)
	files := make([]File, 0, len(names))
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		st, err := f.Stat()
		if err == nil && !st.Mode().IsRegular() {
			f.Close()
			continue
		}
		data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, filepath.Base(n), err)
		}
		if len(data) > MaxFileBytes {
			return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrConfig, filepath.Base(n), MaxFileBytes)
		}
		files = append(files, File{Name: filepath.Base(n), Data: data})
	}
	return files, nil
}

// Load reads and parses every *.yaml file of dir.
func Load(dir string) (*Config, error) {
	files, err := ReadDir(dir)
	if err != nil {
		return nil, err
	}
	return Parse(files)
}

// Parse builds a Config from files, refusing the whole set on the first
// problem (as Envoy ratelimit does, so that a broken file never half
// applies): a YAML error, an unknown key, an empty domain or key, a domain
// in two files, a descriptor twice at one level, an invalid unit, a unit
// beside unlimited, share_threshold without a wildcard, a replaces entry
// that is empty or names its own limit.
func Parse(files []File) (*Config, error) {
	c := &Config{domains: make(map[string]*domain)}
	for _, f := range files {
		var root yamlRoot
		dec := yaml.NewDecoder(bytes.NewReader(f.Data))
		dec.KnownFields(true)
		if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, f.Name, err)
		}
		if root.Domain == "" {
			return nil, fmt.Errorf("%w: %s: config file cannot have empty domain", ErrConfig, f.Name)
		}
		if _, dup := c.domains[root.Domain]; dup {
			return nil, fmt.Errorf("%w: %s: duplicate domain %q in config file", ErrConfig, f.Name, root.Domain)
		}
		d := &domain{name: root.Domain}
		if err := d.load(&d.root, "", nil, root.Descriptors, 1); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, f.Name, err)
		}
		c.domains[root.Domain] = d
		c.Files = append(c.Files, f.Name)
	}
	return c, nil
}

// load adds descs below n; prefix is n's path ("" at the domain), levels
// the entries that lead to it.
func (d *domain) load(n *node, prefix string, levels []level, descs []yamlDescriptor, depth int) error {
	if len(descs) > 0 && depth > MaxDepth {
		return fmt.Errorf("descriptors nested deeper than %d levels under %q", MaxDepth, prefix)
	}
	for i := range descs {
		y := &descs[i]
		if y.Key == "" {
			return errors.New("descriptor has empty key")
		}
		k := y.Key
		if y.Value != "" {
			k += "_" + y.Value
		}
		path := prefix + k
		if n.children == nil {
			n.children = make(map[string]*node)
		}
		if _, dup := n.children[k]; dup {
			return fmt.Errorf("duplicate descriptor composite key %q", path)
		}
		c := &node{}
		hasStar := strings.Contains(k, "*")
		if y.ShareThreshold {
			if !hasStar {
				return fmt.Errorf("share_threshold can only be used with wildcard values (containing '*'), but found key %q", k)
			}
			c.share, c.pattern = true, y.Value
		}
		if hasStar {
			n.wild = append(n.wild, wildEntry{key: k, parts: strings.Split(k, "*")})
		}
		lv := level{kind: 'f'}
		switch {
		case hasStar:
			lv.kind = 'w'
			if c.share {
				lv.pattern = c.pattern
			}
		case y.Value == "":
			lv.kind = 'k'
		}
		here := append(levels[:len(levels):len(levels)], lv)
		if rl := y.RateLimit; rl != nil {
			r := &rule{path: path, metric: MetricName(path), levels: here, rpu: rl.RequestsPerUnit, unlimited: rl.Unlimited, shadow: y.ShadowMode,
				quota: y.QuotaMode, detailed: y.DetailedMetric, name: rl.Name}
			if rl.Unlimited {
				if rl.Unit != "" {
					if _, err := parseUnit(rl.Unit); err == nil {
						return fmt.Errorf("%s: should not specify rate limit unit when unlimited", path)
					}
				}
			} else {
				u, err := parseUnit(rl.Unit)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				r.unit = u
			}
			for _, rep := range rl.Replaces {
				if rep.Name == "" {
					return fmt.Errorf("%s: should not have an empty replaces entry", path)
				}
				if rep.Name == rl.Name {
					return fmt.Errorf("%s: replaces should not contain name of same descriptor", path)
				}
				r.replaces = append(r.replaces, rep.Name)
			}
			if len(d.rules) >= MaxRulesByDomain {
				return fmt.Errorf("more than %d rate limits in domain %q", MaxRulesByDomain, d.name)
			}
			d.rules = append(d.rules, r)
			c.rule = r
		}
		if err := d.load(c, path+".", here, y.Descriptors, depth+1); err != nil {
			return err
		}
		n.children[k] = c
	}
	return nil
}

// Domains returns the names of the configured domains, sorted.
func (c *Config) Domains() []string {
	out := make([]string, 0, len(c.domains))
	for name := range c.domains {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Metrics returns the metric names (MetricName of the descriptor paths with
// a rate_limit) of domain, in file order, or nil for an unknown domain.
func (c *Config) Metrics(dom string) []string {
	d := c.domains[dom]
	if d == nil {
		return nil
	}
	out := make([]string, len(d.rules))
	for i, r := range d.rules {
		out[i] = r.metric
	}
	return out
}

// MaxMetricBytes bounds a metric name made from a descriptor path, as the
// catalog bounds metric names.
const MaxMetricBytes = 255

// MetricName turns a descriptor path ("key1_value1.key2") into a Sluice
// metric name, which allows only letters, digits, '_', '-', '.' and ':':
// every other byte, and ':' itself, is written ":XX" (hex), so that two
// paths never share a name ("path_/api/*" is "path_:2Fapi:2F:2A"). A name
// longer than MaxMetricBytes keeps its first bytes and ends in ":" and the
// xxhash of the whole.
func MetricName(path string) string {
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(path))
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' {
			b = append(b, c)
			continue
		}
		b = append(b, ':', hex[c>>4], hex[c&15])
	}
	if len(b) > MaxMetricBytes {
		h := xxhash.Sum64(b)
		b = append(b[:MaxMetricBytes-17], ':')
		b = appendHex16(b, h)
	}
	return string(b)
}

// wildMatch reports whether s matches the pattern cut at its stars; each
// star matches any run of bytes, including none.
func wildMatch(parts []string, s string) bool {
	if len(parts) == 1 {
		return parts[0] == s
	}
	first, last := parts[0], parts[len(parts)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	mid := s[len(first) : len(s)-len(last)]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(mid, p)
		if i < 0 {
			return false
		}
		mid = mid[i+len(p):]
	}
	return true
}

// Entry is one key/value of a request's descriptor.
type Entry struct{ Key, Value string }

// match is what a descriptor resolves to: its rule (nil: no limit applies)
// and, per entry, how the counter names it.
type match struct {
	rule *rule
	// dyn[i] is true when entry i was not fixed by the configuration (a
	// key-only or wildcard descriptor): its value is part of the
	// application. shared[i] is the share_threshold pattern standing for
	// the value ("" when none).
	dyn    [MaxEntries]bool
	shared [MaxEntries]string
}

// lookup resolves a descriptor in domain d like Envoy ratelimit: at each
// level the exact "key_value" wins, then the first wildcard that matches
// it, then "key" alone; the limit applies only when the descriptor's last
// entry lands on a descriptor with a rate_limit; a level without children
// ends the walk. buf is scratch for the "key_value" string.
func (d *domain) lookup(entries []Entry, m *match, buf []byte) []byte {
	m.rule = nil
	n := &d.root
	for i := range entries {
		e := &entries[i]
		buf = append(append(append(buf[:0], e.Key...), '_'), e.Value...)
		next := n.children[string(buf)]
		m.dyn[i], m.shared[i] = false, ""
		if next == nil {
			for _, w := range n.wild {
				if wildMatch(w.parts, string(buf)) {
					next = n.children[w.key]
					m.dyn[i] = true
					if next != nil && next.share {
						m.shared[i] = next.pattern
					}
					break
				}
			}
		}
		if next == nil {
			next = n.children[e.Key]
			m.dyn[i] = next != nil
		}
		if next == nil {
			return buf
		}
		if i == len(entries)-1 {
			m.rule = next.rule
		}
		if len(next.children) == 0 {
			return buf
		}
		n = next
	}
	return buf
}

// ruleString is for test failures.
func (r *rule) String() string {
	if r == nil {
		return "<nil>"
	}
	if r.unlimited {
		return r.path + ": unlimited"
	}
	return r.path + ": " + strconv.FormatUint(uint64(r.rpu), 10) + "/" + r.unit.period.String()
}
