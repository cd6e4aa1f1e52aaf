package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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
	commonFlags(fs, &cfg)
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
	p1, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	listen, qlisten := fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)
	ctx, cancel := context.WithCancel(context.Background())
	out, errs := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--data-dir", dir, "--listen", listen, "--query-listen", qlisten, "--node", "test"}, out, errs)
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("sluice dev exited %d: %s", code, errs.String())
			}
		case <-time.After(60 * time.Second):
			t.Error("sluice dev did not stop within 60s")
		}
	}()
	var authrep, token string
	deadline := time.Now().Add(60 * time.Second)
	for authrep == "" {
		if m := curlLine.FindStringSubmatch(out.String()); m != nil {
			authrep = m[1]
			token = queryTokenLine.FindStringSubmatch(out.String())[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no credentials printed:\n%s\n%s", out.String(), errs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitReady(t, listen)
	if code, body := get(t, authrep); code != 200 {
		t.Fatalf("authrep: %d %s", code, body)
	}
	url := "http://" + qlisten + "/api/v1/usage?service_id=" + catalog.DemoServiceID + "&metric=hits&granularity=total"
	deadline = time.Now().Add(30 * time.Second)
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
