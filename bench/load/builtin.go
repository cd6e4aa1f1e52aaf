package load

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
)

//go:embed scenarios/*.yaml
var builtin embed.FS

// Builtin returns the names of the scenarios built into the binary (the
// standard set `make bench-load` runs).
func Builtin() []string {
	entries, _ := fs.ReadDir(builtin, "scenarios") // embedded: cannot fail
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Open returns the built-in scenario called name, or else reads the file
// name.
func Open(name string) (*Scenario, error) {
	if b, err := builtin.ReadFile("scenarios/" + name + ".yaml"); err == nil && !strings.ContainsAny(name, "/\\") {
		s, err := ParseScenario(b)
		if err != nil {
			return nil, fmt.Errorf("built-in scenario %s: %w", name, err)
		}
		return s, nil
	}
	if _, err := os.Stat(name); err != nil {
		return nil, fmt.Errorf("scenario %q is neither a built-in one (%s) nor a readable file: %w", name, strings.Join(Builtin(), ", "), err)
	}
	return LoadScenario(name)
}
