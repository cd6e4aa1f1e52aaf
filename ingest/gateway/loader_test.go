package gateway

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strconv"
	"testing"
)

// TestAPIcastLoaderCalls makes the calls APIcast's remote_v2 loader makes,
// URL for URL (gateway/src/apicast/configuration_loader/remote_v2.lua and
// its spec), and reads the answers the way it does: index() pages
// proxy_configs with per_page=500 until a page is not full,
// index_per_service() lists services.json the same way and fetches each
// service's latest configuration, index_custom_path() calls
// PATH/{env}.json?host=. Each must load the same services.
func TestAPIcastLoaderCalls(t *testing.T) {
	api, _ := newTestAPI(t)
	auth := basic(tokenAcme, "") // THREESCALE_PORTAL_ENDPOINT=http://TOKEN@host
	get := func(uri string, into any) {
		t.Helper()
		status, body := api.do(call{uri: uri, auth: auth})
		if status != 200 {
			t.Fatalf("GET %s: %d %s", uri, status, body)
		}
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("GET %s: %v", uri, err)
		}
	}
	type content struct {
		ID             json.Number `json:"id"`
		BackendVersion string      `json:"backend_version"`
	}
	type proxyConfig struct {
		ProxyConfig struct {
			Content content `json:"content"`
		} `json:"proxy_config"`
	}
	const perPage = 500
	for _, env := range []string{"staging", "production"} {
		t.Run(env, func(t *testing.T) {
			// index(host): proxy_configs_per_page.
			var index []content
			for page := 1; ; page++ {
				args := url.Values{"host": {""}, "version": {"latest"}, "page": {strconv.Itoa(page)}, "per_page": {strconv.Itoa(perPage)}}
				var got struct {
					ProxyConfigs []proxyConfig `json:"proxy_configs"`
				}
				get("/admin/api/account/proxy_configs/"+env+".json?"+args.Encode(), &got)
				for _, pc := range got.ProxyConfigs {
					index = append(index, pc.ProxyConfig.Content)
				}
				if len(got.ProxyConfigs) != perPage {
					break
				}
			}
			// index_per_service(): services_per_page, then config(service, env, 'latest').
			var perService []content
			for page := 1; ; page++ {
				args := url.Values{"page": {strconv.Itoa(page)}, "per_page": {strconv.Itoa(perPage)}}
				var got struct {
					Services []struct {
						Service struct {
							ID json.Number `json:"id"`
						} `json:"service"`
					} `json:"services"`
				}
				get("/admin/api/services.json?"+args.Encode(), &got)
				for _, s := range got.Services {
					var pc proxyConfig
					get("/admin/api/services/"+s.Service.ID.String()+"/proxy/configs/"+env+"/latest.json", &pc)
					perService = append(perService, pc.ProxyConfig.Content)
				}
				if len(got.Services) != perPage {
					break
				}
			}
			// index_custom_path(host) with PATH /admin/api/account/proxy_configs.
			var custom struct {
				ProxyConfigs []proxyConfig `json:"proxy_configs"`
			}
			get("/admin/api/account/proxy_configs/"+env+".json?"+url.Values{"host": {"api.example.com"}}.Encode(), &custom)

			want := []content{{ID: svcSearch, BackendVersion: "1"}, {ID: svcDefault, BackendVersion: "2"}}
			if !reflect.DeepEqual(index, want) {
				t.Errorf("index: %+v, want %+v", index, want)
			}
			if !reflect.DeepEqual(perService, want) {
				t.Errorf("index_per_service: %+v, want %+v", perService, want)
			}
			if len(custom.ProxyConfigs) != 1 || custom.ProxyConfigs[0].ProxyConfig.Content != want[0] {
				t.Errorf("index_custom_path(api.example.com): %+v, want the one service with that host", custom.ProxyConfigs)
			}
		})
	}
}
