package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestFlagsDocumented: every flag of every command is in docs/configuration.md
// with its variable, in the command's section or a section it refers to, so
// that the document users read stays the binary's.
func TestFlagsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	flagRE := regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)\s+\((SLUICE_[A-Z0-9_]+)`)
	kafkaConn, chConn := "Kafka connection flags", "ClickHouse connection flags"
	for _, c := range []struct {
		args     []string
		sections []string // the sections of docs/configuration.md that document its flags
	}{
		{[]string{"dev"}, []string{"`sluice dev`"}},
		{[]string{"serve"}, []string{"`sluice serve`", "`sluice dev`", kafkaConn, chConn}},
		{[]string{"migrate"}, []string{"`sluice migrate`", chConn}},
		{[]string{"export"}, []string{"`sluice export`", chConn}},
		{[]string{"config", "export"}, []string{"`sluice config export`", kafkaConn}},
		{[]string{"config", "promote"}, []string{"`sluice config promote`"}},
		{[]string{"bench"}, []string{"`sluice bench`"}},
	} {
		name := strings.Join(c.args, " ")
		var out, errs bytes.Buffer
		run(context.Background(), append(append([]string{}, c.args...), "-h"), &out, &errs)
		flags := flagRE.FindAllStringSubmatch(errs.String()+out.String(), -1)
		if len(flags) == 0 {
			t.Fatalf("sluice %s -h lists no flags:\n%s", name, errs.String())
		}
		section := ""
		for _, title := range c.sections {
			start := strings.Index(doc, "### "+title)
			if start < 0 {
				t.Fatalf("docs/configuration.md has no section %q", title)
			}
			s := doc[start+1:]
			if end := strings.Index(s, "\n### "); end >= 0 {
				s = s[:end]
			}
			section += s
		}
		var missing []string
		for _, f := range flags {
			if !strings.Contains(section, "`--"+f[1]+"`") || !strings.Contains(section, f[2]) {
				missing = append(missing, "--"+f[1])
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("sluice %s: flags not in its section of docs/configuration.md (with their variable): %v", name, missing)
		}
	}
}
