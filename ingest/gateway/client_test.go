package gateway

import (
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	porta "github.com/3scale/3scale-porta-go-client/client"
	"github.com/valyala/fasthttp"
)

// serve runs the API on a loopback port and returns its address.
func serve(t *testing.T, api *API) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: api.Handler, ReadTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// TestPortaGoClient drives the API with 3scale's own admin API client
// (github.com/3scale/3scale-porta-go-client): it lists the services, reads
// a proxy and the latest production configuration, and promotes; a wrong
// token and another tenant's service are refused.
func TestPortaGoClient(t *testing.T) {
	api, _ := newTestAPI(t)
	host, port, _ := net.SplitHostPort(serve(t, api))
	p, _ := strconv.Atoi(port)
	portal, err := porta.NewAdminPortal("http", host, p)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	c := porta.NewThreeScale(portal, tokenAcme, hc)

	list, err := c.ListProducts()
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, s := range list.Products {
		ids = append(ids, s.Element.ID)
	}
	if len(ids) != 2 || ids[0] != 2555417777820 || ids[1] != 2555417777821 || list.Products[1].Element.BackendVersion != "2" {
		t.Fatalf("services %+v", list.Products)
	}

	proxy, err := c.ProductProxy(2555417777820)
	if err != nil {
		t.Fatal(err)
	}
	if e := proxy.Element; e.ServiceID != 2555417777820 || e.ApiBackend != "https://backend.internal:443" || e.CredentialsLocation != "headers" || e.ErrorStatusAuthFailed != 403 {
		t.Errorf("proxy %+v", e)
	}

	latest, err := c.GetLatestProxyConfig(svcSearch, "production")
	if err != nil {
		t.Fatal(err)
	}
	pc := latest.ProxyConfig
	if pc.Version != 1 || pc.Environment != "production" || pc.Content.ID != 2555417777820 ||
		pc.Content.BackendVersion != "1" || pc.Content.BackendAuthenticationValue != "st-search" ||
		pc.Content.Proxy.Backend.Endpoint != "http://sluice.example.com:3001" ||
		len(pc.Content.Proxy.ProxyRules) != 3 || pc.Content.Proxy.ProxyRules[0].MetricSystemName != "search" || pc.Content.Proxy.ProxyRules[0].Delta != 2 {
		t.Errorf("latest production config %+v", pc)
	}

	promoted, err := c.PromoteProxyConfig(svcSearch, "staging", "1", "production")
	if err != nil {
		t.Fatal(err)
	}
	if promoted.ProxyConfig.Version != 2 || promoted.ProxyConfig.Environment != "production" {
		t.Errorf("promoted %+v", promoted.ProxyConfig)
	}
	versions, err := c.ListProxyConfig(svcSearch, "production")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(versions.ProxyConfigs); n != 2 {
		t.Errorf("%d production versions after a promotion, want 2", n)
	}
	staging, err := c.ListProxyConfig(svcSearch, "staging")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(staging.ProxyConfigs); n != 1 {
		t.Errorf("%d staging versions after a promotion, want 1 (untouched)", n)
	}

	for _, bad := range []struct {
		name  string
		token string
		id    int64
		code  int
	}{
		{"wrong token", "adm-wrong", 2555417777820, 403},
		{"missing token", "", 2555417777820, 401},
		{"other tenant's service", tokenAcme, 2555417777899, 404},
	} {
		_, err := porta.NewThreeScale(portal, bad.token, hc).ProductProxy(bad.id)
		ae, ok := err.(porta.ApiErr)
		if !ok || ae.Code() != bad.code {
			t.Errorf("%s: err %v, want API error %d", bad.name, err, bad.code)
		}
	}
}
