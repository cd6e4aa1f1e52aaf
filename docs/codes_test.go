package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// codeSource is where an API's error codes are defined in the code, and the
// document that must list each of them with its HTTP status.
type codeSource struct {
	name  string
	files string         // glob relative to the repository root
	re    *regexp.Regexp // submatches: the code and its status, by name
	doc   string
}

// TestErrorCodesDocumented checks that every error code an API can answer,
// as defined in its package, appears in its document on a line that also
// gives its status, so that a new code cannot ship undocumented.
func TestErrorCodesDocumented(t *testing.T) {
	sources := []codeSource{
		{"Service Management API", "ingest/smapi/codes.go",
			regexp.MustCompile(`\{"(?P<code>[a-z_]+)", (?P<status>\d{3})\}`), "service-management-api.md"},
		{"Service Management API denials", "ingest/smapi/codes.go",
			regexp.MustCompile(`deny[A-Za-z]+: +"(?P<code>[a-z_]+)"`), "service-management-api.md"},
		{"query API", "query/errors.go",
			regexp.MustCompile(`"(?P<code>[a-z_]+)": +(?P<status>\d{3}),`), "query-api.md"},
		{"Envoy rate limit POST /json", "ingest/envoyrls/http.go",
			regexp.MustCompile(`"(?P<code>[a-z_]+)": +(?P<status>\d{3}),`), "envoy-ratelimit.md"},
		{"admin API", "ingest/admin/*.go",
			regexp.MustCompile(`errf\((?P<status>\d{3}), "(?P<code>[a-z_]+)"`), "admin-api.md"},
		{"gateway configuration", "ingest/gateway/*.go",
			regexp.MustCompile(`errf\((?P<status>\d{3}), "(?P<code>[a-z_]+)"`), "admin-api.md"},
	}
	for _, s := range sources {
		t.Run(s.name, func(t *testing.T) {
			doc, err := os.ReadFile(s.doc)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(doc), "\n")
			files, err := filepath.Glob(filepath.Join(repoRoot, filepath.FromSlash(s.files)))
			if err != nil || len(files) == 0 {
				t.Fatalf("no source files match %s: %v", s.files, err)
			}
			found := 0
			for _, f := range files {
				if strings.HasSuffix(f, "_test.go") {
					continue
				}
				src, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range s.re.FindAllSubmatch(src, -1) {
					found++
					code := "`" + string(m[s.re.SubexpIndex("code")]) + "`"
					status := ""
					if i := s.re.SubexpIndex("status"); i >= 0 {
						status = string(m[i])
					}
					ok := false
					for _, l := range lines {
						if strings.Contains(l, code) && strings.Contains(l, status) {
							ok = true
							break
						}
					}
					if !ok {
						t.Errorf("%s: code %s (status %s) is not listed in docs/%s", filepath.Base(f), code, status, s.doc)
					}
				}
			}
			if found == 0 {
				t.Fatalf("no error code found in %s: the pattern is out of date", s.files)
			}
		})
	}
}
