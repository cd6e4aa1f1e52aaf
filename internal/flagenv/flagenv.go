// Package flagenv lets every command-line flag also come from an environment
// variable SLUICE_<FLAG> (upper case, dashes as underscores), so containers and
// systemd units can configure Sluice without a command line. A flag given on
// the command line wins over the environment.
package flagenv

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName returns the environment variable that sets the named flag.
func EnvName(flagName string) string {
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ErrUsage marks every error of Parse except flag.ErrHelp: the command line
// or the environment was wrong, not the work (callers exit 2 for it).
var ErrUsage = errors.New("usage")

// Parse parses args into fs, then fills every flag not given on the command
// line from its environment variable. It reports which variable was bad.
// Its errors wrap ErrUsage, except flag.ErrHelp which it returns as is.
func Parse(fs *flag.FlagSet, args []string) error {
	err := parse(fs, args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageErr{err}
}

// usageErr wraps a parse error so it matches ErrUsage yet prints as itself.
type usageErr struct{ err error }

func (e usageErr) Error() string        { return e.err.Error() }
func (e usageErr) Is(target error) bool { return target == ErrUsage }
func (e usageErr) Unwrap() error        { return e.err }

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		name := EnvName(f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment variable %s: %w", name, e)
			}
		}
	})
	return err
}

// Usage prints the flags of fs with their environment variables and defaults.
func Usage(fs *flag.FlagSet, synopsis string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s\n\nflags (each also from the environment variable shown):\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(w, "  -%s  (%s, default %q)\n    \t%s\n", f.Name, EnvName(f.Name), f.DefValue, f.Usage)
		})
	}
}
