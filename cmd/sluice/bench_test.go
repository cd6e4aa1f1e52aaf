package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	loadgen "github.com/sluice-dev/sluice/bench/load"
)

func TestBenchCommand(t *testing.T) {
	base, stop, err := loadgen.StartNoop("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	dir := t.TempDir()
	js := filepath.Join(dir, "r.json")
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"bench", "--scenario", "authorize", "--target", base, "--duration", "200ms",
		"--warmup", "0s", "--conns", "2", "--quiet", "--baseline", "--rate", "0,200", "--json", js, "--chart", filepath.Join(dir, "c.png")}, &out, &errs)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	if !strings.Contains(out.String(), "| authorize | target |") || !strings.Contains(out.String(), "ratio to noop") {
		t.Errorf("report:\n%s", out.String())
	}
	var rep loadgen.Report
	b, err := os.ReadFile(js)
	if err != nil || json.Unmarshal(b, &rep) != nil || len(rep.Results) != 4 {
		t.Fatalf("json report (%v): %s", err, b)
	}
	if _, err := os.Stat(filepath.Join(dir, "c.png")); err != nil {
		t.Error(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"unknown scenario", []string{"--scenario", "nope"}, 2},
		{"bad rate", []string{"--rate", "fast"}, 2},
		{"bad var", []string{"--var", "token"}, 2},
		{"no conns", []string{"--conns", "0"}, 2},
		{"unreachable", []string{"--target", "http://127.0.0.1:1", "--duration", "100ms", "--warmup", "0s", "--quiet"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errs bytes.Buffer
			if code := run(context.Background(), append([]string{"bench"}, tc.args...), &out, &errs); code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, errs.String())
			}
		})
	}
}
