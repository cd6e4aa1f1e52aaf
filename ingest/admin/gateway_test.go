package admin

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestGatewayRoutes: PUT .../gateway edits staging (a new staging version
// when the block changes, none when it does not), an invalid block is 422
// with its path, promote makes a production version and leaves staging as
// it was, and another tenant's service is 404.
func TestGatewayRoutes(t *testing.T) {
	e := newEnv(t)
	path := v1 + "/services/" + acmeSvc + "/gateway"
	state := func() gatewayState {
		t.Helper()
		r := e.do("GET", path, acmeTok, "")
		if r.status != 200 {
			t.Fatalf("GET gateway: %d %s", r.status, r.body)
		}
		var st gatewayState
		if err := json.Unmarshal(r.body, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := state(); st.Staging != 1 || st.Production != 1 || st.Gateway != nil {
		t.Fatalf("initial %+v", st)
	}
	block := `{"api_backend": "https://b.internal", "mapping_rules": [{"http_method": "GET", "pattern": "/search", "metric": "search", "delta": 2}]}`
	for i := range 2 { // the second PUT changes nothing: no new version
		r := e.do("PUT", path, acmeTok, block)
		if r.status != 200 {
			t.Fatalf("PUT %d: %d %s", i, r.status, r.body)
		}
	}
	st := state()
	if st.Staging != 2 || st.Production != 1 || st.Gateway == nil || st.Gateway.APIBackend != "https://b.internal" {
		t.Fatalf("after PUT %+v", st)
	}
	// The block is also the service's gateway field.
	if r := e.do("GET", v1+"/services/"+acmeSvc, acmeTok, ""); !strings.Contains(string(r.body), `"gateway":{"api_backend":"https://b.internal"`) {
		t.Errorf("service: %s", r.body)
	}

	for _, c := range []struct {
		name, body, want string
	}{
		{"unknown metric", `{"mapping_rules": [{"http_method": "GET", "pattern": "/", "metric": "nope"}]}`, `services[0].gateway.mapping_rules[0].metric`},
		{"bad pattern", `{"mapping_rules": [{"http_method": "GET", "pattern": "/a(b", "metric": "hits"}]}`, `services[0].gateway.mapping_rules[0].pattern`},
		{"unknown field", `{"mapping_rule": []}`, `mapping_rule`},
	} {
		r := e.do("PUT", path, acmeTok, c.body)
		if r.status != 422 || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s: %d %s, want 422 naming %s", c.name, r.status, r.body, c.want)
		}
	}
	if st := state(); st.Staging != 2 {
		t.Errorf("a refused PUT made staging version %d", st.Staging)
	}

	r := e.do("POST", path+"/promote", acmeTok, "")
	if r.status != 201 || !strings.Contains(string(r.body), `"version":2`) || !strings.Contains(string(r.body), `"promoted_from":2`) {
		t.Fatalf("promote: %d %s", r.status, r.body)
	}
	if st := state(); st.Staging != 2 || st.Production != 2 {
		t.Errorf("after promote %+v", st)
	}
	if r := e.do("POST", path+"/promote", acmeTok, `{"version": 9}`); r.status != 404 {
		t.Errorf("promote a missing version: %d %s", r.status, r.body)
	}
	if r := e.do("POST", path+"/promote", acmeTok, `{"version": -1}`); r.status != 400 {
		t.Errorf("promote version -1: %d %s", r.status, r.body)
	}
	if r := e.do("POST", path+"/promote", globexTok, ""); r.status != 404 {
		t.Errorf("another tenant's promote: %d %s", r.status, r.body)
	}
	if r := e.do("PUT", path, globexTok, block); r.status != 404 {
		t.Errorf("another tenant's PUT: %d %s", r.status, r.body)
	}
}
