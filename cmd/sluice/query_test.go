package main

import (
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/query"
)

func TestQueryTimeoutFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var cfg nodeConfig
	commonFlags(fs, &cfg, new(slog.LevelVar))
	if cfg.QueryTimeout != query.DefaultQueryTimeout {
		t.Fatalf("default %v", cfg.QueryTimeout)
	}
	if err := fs.Parse([]string{"--query-timeout", "3s"}); err != nil || cfg.QueryTimeout != 3*time.Second {
		t.Fatalf("parse: %v %v", err, cfg.QueryTimeout)
	}
}

var queryTokenLine = regexp.MustCompile(`query token\s+(\S+)`)

// TestDevQueryAPI: `sluice dev` serves the query API on --query-listen with
// the printed query token, and a call made through the printed authrep
// shows up in the usage series.
func TestDevQueryAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ClickHouse and an embedded broker")
	}
	dir := filepath.Join(t.TempDir(), "data")
	listen, qlisten := freeAddr(t), freeAddr(t)
	authrep, out, errs, stop := startDevOut(t, dir, listen, "--query-listen", qlisten)
	defer stop()
	m := queryTokenLine.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no query token printed:\n%s", out.String())
	}
	token := m[1]
	waitReady(t, listen)
	if code, body := get(t, authrep); code != 200 {
		t.Fatalf("authrep: %d %s", code, body)
	}
	url := "http://" + qlisten + "/api/v1/usage?service_id=" + catalog.DemoServiceID + "&metric=hits&granularity=total"
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var ans struct{ Total int64 }
			json.Unmarshal(body, &ans)
			if resp.StatusCode == 200 && ans.Total == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("query API: %d %s", resp.StatusCode, body)
			}
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(errs.String()+out.String(), "query role listening") {
		t.Errorf("no startup line for the query role")
	}
}
