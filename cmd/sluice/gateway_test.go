package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestGatewayOnAPIListener: the API listener serves the gateway
// configuration beside the admin API: APIcast's calls with the admin token
// as Basic user name, errors (the HTTP server's included) in the gateway
// configuration's JSON shape, the backend at the default --public-url, and
// `sluice config promote` making a new production version.
func TestGatewayOnAPIListener(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a sluice node over an in-process broker")
	}
	api, _ := startAPIListener(t)
	get := func(path string, user string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+api.addr+path, nil)
		if user != "" {
			req.SetBasicAuth(user, "")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.Bytes()
	}
	latest := func() (version int64, endpoint string) {
		t.Helper()
		status, body := get("/admin/api/account/proxy_configs/production.json?version=latest&page=1&per_page=500", "adm-http-test")
		var got struct {
			ProxyConfigs []struct {
				ProxyConfig struct {
					Version int64
					Content struct {
						ID    string
						Proxy struct{ Backend struct{ Endpoint string } }
					}
				} `json:"proxy_config"`
			} `json:"proxy_configs"`
		}
		if err := json.Unmarshal(body, &got); status != 200 || err != nil || len(got.ProxyConfigs) != 1 || got.ProxyConfigs[0].ProxyConfig.Content.ID != "svc" {
			t.Fatalf("production configs: %d %s (%v)", status, body, err)
		}
		pc := got.ProxyConfigs[0].ProxyConfig
		return pc.Version, pc.Content.Proxy.Backend.Endpoint
	}
	v, endpoint := latest()
	if v != 1 || endpoint != "http://"+api.addr {
		t.Errorf("production version %d, backend %q; want 1 and the default public URL http://%s", v, endpoint, api.addr)
	}

	for _, c := range []struct {
		name, raw string
		status    int
		code      string
	}{
		{"no token", "GET /admin/api/services.json HTTP/1.1\r\nHost: x\r\n\r\n", 401, "unauthorized"},
		{"wrong token", "GET /admin/api/services.json?access_token=adm-nope HTTP/1.1\r\nHost: x\r\n\r\n", 403, "access_denied"},
		{"16 KiB URL", "GET /admin/api/services.json?x=" + strings.Repeat("a", 16<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"},
		{"unknown path without a token", "GET /admin/api/account/nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := exchange(t, api.addr, []byte(c.raw))
			if r.resp == nil {
				t.Fatalf("no answer: %v", r.err)
			}
			var e struct{ Error, Code string }
			if r.resp.StatusCode != c.status || r.resp.Header.Get("Content-Type") != "application/json" ||
				json.Unmarshal(r.body, &e) != nil || e.Code != c.code || e.Error == "" {
				t.Errorf("%d %s %s, want %d with code %s", r.resp.StatusCode, r.resp.Header.Get("Content-Type"), r.body, c.status, c.code)
			}
		})
	}

	var out, errs bytes.Buffer
	t.Setenv("SLUICE_ADMIN_TOKEN", "adm-http-test")
	if code := run(context.Background(), []string{"config", "promote", "--service", "svc", "--admin-url", "http://" + api.addr}, &out, &errs); code != 0 {
		t.Fatalf("config promote: exit %d: %s", code, errs.String())
	}
	if want := "service svc: staging version 1 promoted to production version 2\n"; out.String() != want {
		t.Errorf("config promote printed %q, want %q", out.String(), want)
	}
	if v, _ := latest(); v != 2 {
		t.Errorf("production version %d after promote, want 2", v)
	}
	out.Reset()
	errs.Reset()
	if code := run(context.Background(), []string{"config", "promote", "--service", "nope", "--admin-url", "http://" + api.addr}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "not_found") {
		t.Errorf("promote of an unknown service: exit %d, %s", code, errs.String())
	}
	t.Setenv("SLUICE_ADMIN_TOKEN", "")
	if code := run(context.Background(), []string{"config", "promote", "--service", "svc"}, &out, &errs); code != 2 {
		t.Errorf("promote without a token: exit %d, want 2", code)
	}
}
