// Package gateway serves API gateways their configuration in the shapes of
// 3scale's admin API, so that a stock APIcast (and 3scale's admin clients:
// the 3scale-porta-go-client, the 3scale-api Python client, the 3scale
// toolbox) can run against Sluice alone:
//
//	GET  /admin/api/account/proxy_configs/{env}.json        every service's config (host, version, page, per_page)
//	GET  /admin/api/services.json                           the services (page, per_page)
//	GET  /admin/api/services/{id}.json                      one service
//	GET  /admin/api/services/{id}/proxy.json                its proxy settings (staging, as edited)
//	GET  /admin/api/services/{id}/proxy/configs/{env}.json  its versions in env (page, per_page)
//	GET  /admin/api/services/{id}/proxy/configs/{env}/{version}.json  one version, or latest.json
//	POST /admin/api/services/{id}/proxy/configs/staging/{version}/promote.json  to=production
//
// {env} is staging or production. APIcast's custom-path form
// (THREESCALE_PORTAL_ENDPOINT with a path P makes it call GET P/{env}.json)
// works with P = /admin/api/account/proxy_configs.
//
// A proxy config's content is the service object APIcast's remote_v2
// loader and configuration parser read (id, system_name, backend_version,
// backend_authentication_type and _value, and proxy with api_backend,
// hosts, credentials_location, auth_* names, error_* texts, statuses and
// headers, policy_chain, proxy_rules and backend pointing at Sluice's
// --public-url). The gateway part of a version is frozen when the version
// is made (package configlog keeps every version); the service's
// credentials and authentication mode are the service's current ones, so a
// rotated service token reaches gateways without a promotion.
//
// Authentication is the tenant's admin token, sent as 3scale's clients
// send it: HTTP Basic with the token as user name and an empty password
// (APIcast, from THREESCALE_PORTAL_ENDPOINT=http://TOKEN@host), the same
// with an empty user name and the token as password (the porta Go client),
// or ?access_token=TOKEN. A missing credential is 401, a wrong one 403, and
// another tenant's service is 404 like one that does not exist: a token
// opens its own tenant only. Tokens are compared in constant time and never
// logged. Errors are JSON, {"error": message, "code": code}: the `error`
// string is 3scale's shape, `code` the machine-readable reason.
//
// Work per request is bounded: lists are paged (per_page at most 500,
// 3scale's and APIcast's page size), a page past the end is empty (clients
// page until they get one), and page is at most MaxPage.
package gateway
