package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/chlocal"
)

// The credentials of the secrets test: long and distinctive, so that any
// occurrence in a log is theirs and not a coincidence, and none a prefix of
// another.
const (
	secretAdmin    = "admtok-Q7zX9vR2mK4pL8wN3sT6yB1cF5hJ0gDe-secret"
	secretQuery    = "qrytok-V3nB8cX1zL6kJ9hG2fD5sA4pO7iU0yTr-secret"
	secretQuery2   = "qrytok-M2wE7rT4yU9iO1pA6sD3fG8hJ5kL0zXc-secret"
	secretSvcTok   = "svctok-H5jK2lZ8xC3vB6nM9qW4eR7tY1uI0oPa-secret"
	secretSvcTok2  = "svctok-R8tY3uI6oP1aS4dF7gH2jK5lZ9xC0vBn-secret"
	secretProvider = "prvkey-L4kJ7hG1fD9sA2pO5iU8yT3rE6wQ0zXm-secret"
	secretUserKey  = "usrkey-C9vB2nM5qW8eR1tY4uI7oP3aS6dF0gHj-secret"
	secretUserKey2 = "usrkey-N6mQ1wE4rT7yU2iO5pA8sD3fG9hJ0kLz-secret"
	secretAppKey   = "appkey-F1gH4jK7lZ2xC5vB8nM3qW6eR9tY0uIo-secret"
	secretAppKey2  = "appkey-Y8uI1oP4aS7dF2gH5jK9lZ3xC6vB0nMq-secret"
	secretOAuthKey = "oauthk-T2yU5iO8pA1sD4fG7hJ3kL6zX9cV0bNw-secret"
	secretWebhook  = "whksec-B3nM6qW9eR2tY5uI8oP1aS4dF7gH0jKl-secret"
	secretHookPath = "whkurl-K6lZ9xC2vB5nM8qW1eR4tY7uI0oPa3sD-secret"
)

var secrets = []string{secretAdmin, secretQuery, secretQuery2, secretSvcTok, secretSvcTok2, secretProvider,
	secretUserKey, secretUserKey2, secretAppKey, secretAppKey2, secretOAuthKey, secretWebhook, secretHookPath}

const secretsConfig = `tenants:
  - id: leak
    admin_token: ` + secretAdmin + `
    query_tokens: [` + secretQuery + `, ` + secretQuery2 + `]
    webhook_url: "http://127.0.0.1:9/hooks/` + secretHookPath + `?token=` + secretHookPath + `"
    webhook_secret: ` + secretWebhook + `
    services:
      - id: su
        tokens: [` + secretSvcTok + `]
        provider_key: ` + secretProvider + `
        default: true
        metrics: [{name: hits}, {name: search, parent: hits}]
        plans: [{id: p, limits: [{metric: hits, period: minute, max: 5}]}]
        applications:
          - {id: u1, plan: p, user_key: ` + secretUserKey + `}
          - {id: u2, plan: p, user_key: ` + secretUserKey2 + `}
      - id: sa
        tokens: [` + secretSvcTok2 + `]
        auth_mode: app_id
        referrer_filters_required: true
        metrics: [{name: hits}]
        plans: [{id: p, limits: [{metric: hits, period: day, max: 1}]}]
        applications:
          - {id: a1, plan: p, keys: [` + secretAppKey + `, ` + secretAppKey2 + `], referrer_filters: [ok.example.com]}
      - id: so
        tokens: [` + secretSvcTok2 + `]
        auth_mode: oauth
        metrics: [{name: hits}]
        plans: [{id: p}]
        applications:
          - {id: o1, plan: p, keys: [` + secretOAuthKey + `], redirect_url: "https://ok.example.com/cb"}
`

// brokenHTTP returns requests for path that no HTTP server should accept,
// each carrying the credentials in the path, in headers and in bodies:
// what a probe of hostile input sent over raw sockets.
func brokenHTTP(path, header string) []string {
	h := "Host: x\r\n" + header
	lf := strings.ReplaceAll(h, "\r\n", "\n")
	big := strings.Repeat(secretUserKey, 20<<10/len(secretUserKey)+1)
	form := "user_key=" + secretUserKey + "&app_key=" + secretAppKey + "&provider_key=" + secretProvider
	return []string{
		"GET " + path + " HTTP/1.1\n" + lf + "\n",
		"GET " + path + " HTTP/1.1\r\n" + h + "\n",
		"GET " + path + " HTTP/1.1\r\n" + h + "Not a header line " + secretAdmin + "\r\n\r\n",
		"GET " + path + " HTTP/1.1\r\n" + h + "X-Ctl: a\x01" + secretQuery + "\r\n\r\n",
		"GET " + path + " HTTP/1.1\r\n" + h + " folded: " + secretSvcTok + "\r\n\r\n",
		"GET " + path + " HTTP/1.1\r\n" + h + "X-Big: " + big + "\r\n\r\n",
		"GET " + path + "&pad=" + strings.Repeat("z", 20<<10) + " HTTP/1.1\r\n" + h + "\r\n",
		"GET " + path + " HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999999\r\n\r\n",
		"POST " + path + " HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n" + form,
		"POST " + path + " HTTP/1.1\r\n" + h + "Content-Length: -3\r\n\r\n" + form,
		"POST " + path + " HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" + form,
		"POST " + path + " HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + form + "\r\n0\r\n\r\n",
		"POST " + path + " HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\n" + form + "\r\n",
		"POST " + path + " HTTP/1.1\r\n" + h + "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: " +
			fmt.Sprint(len(form)+10) + "\r\n\r\n--b\r\n" + form,
		"POST " + path + " HTTP/1.1\r\n" + h + "Content-Length: " + fmt.Sprint(2<<20) + "\r\n\r\n" + form,
		"G\x00T " + path + " HTTP/1.1\r\n" + h + "\r\n",
		"GET " + path + " HTTP/9.9\r\n" + h + "\r\n",
		"GET " + path + "\x7f" + secretOAuthKey + " HTTP/1.1\r\n" + h + "\r\n",
		"GET " + path + " HTTP/1.1\r\n" + header + "\r\n", // no Host
		"GET " + path + " HTTP/1.1\r\n" + h,               // never terminated
		"GET " + path + " HTTP/1.1\r\n" + h + "\r\n" + "BREW " + path + " HTCPCP/1.0\r\n" + h + "\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + path + header,
		path + "\r\n" + header + "\r\n\r\n",
	}
}

// sendRaw writes raw to addr, closes the writing side (so the server sees
// the end of what the client sends instead of waiting for more), and reads
// whatever comes back.
func sendRaw(t *testing.T, addr string, raw []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(raw)
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, bufio.NewReader(c))
}

// refuse makes one well-formed HTTP request that the API refuses or denies.
func refuse(t *testing.T, method, u, auth, contentType, body string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		// A server may answer an oversized body and close before the
		// client has written it all.
		t.Logf("%s %s: %v", method, u[:min(len(u), 60)], err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// TestNoSecretInLogs sends hostile and malformed requests, each carrying
// configured credentials, to every kind of listener a cluster runs (the API
// listener with the Service Management and admin APIs, the query API, the
// metrics listener of a rollup-only node), with every process logging at
// debug level; nothing any process prints may contain a credential.
func TestNoSecretInLogs(t *testing.T) {
	skipShort(t)
	t.Setenv("SLUICE_LOG_LEVEL", "debug") // every node flag is also a SLUICE_ variable
	dir := t.TempDir()
	logPath := filepath.Join(dir, "processes.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(secretsConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	broker, err := StartBroker(filepath.Join(dir, "kafka"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Stop)
	ch, err := chlocal.Start(context.Background(), chlocal.Options{Dir: filepath.Join(dir, "clickhouse")})
	if err != nil {
		t.Fatalf("start ClickHouse (needs /usr/bin/clickhouse-server: apt-get install -y clickhouse-server clickhouse-client): %v", err)
	}
	t.Cleanup(func() { ch.Stop() })
	addr := func() string {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("127.0.0.1:%d", p)
	}
	apiAddr, queryAddr, opsAddr := addr(), addr(), addr()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := func(o NodeOptions) *Node {
		o.Bin, o.Brokers, o.ClickHouse, o.Log = sluiceBin, broker.Addr(), ch.Addr(), logFile
		o.DataDir = filepath.Join(dir, "data-"+o.Name)
		n, err := StartNode(o)
		if err != nil {
			t.Fatal(err)
		}
		// The test stops the nodes itself to read their whole output; this
		// is for when it fails before.
		t.Cleanup(func() { n.Stop(30 * time.Second) })
		if err := n.WaitReady(ctx); err != nil {
			t.Fatalf("%v\n%s", err, TailFile(logPath, 4000))
		}
		return n
	}
	api := start(NodeOptions{Roles: "api,query", Name: "api", Listen: apiAddr, Config: cfg, Extra: []string{"--query-listen", queryAddr}})
	rollup := start(NodeOptions{Roles: "rollup", Name: "rollup", Listen: opsAddr})

	// Well-formed calls that are refused or denied, with credentials in
	// every place the APIs read them from.
	base := "http://" + apiAddr
	refuse(t, "GET", base+"/transactions/authrep.xml?service_token="+secretSvcTok+"&service_id=su&user_key="+secretUserKey+"&usage%5Bhits%5D=9", "", "", "")
	refuse(t, "GET", base+"/transactions/authrep.xml?service_token="+secretSvcTok+"&service_id=su&user_key="+secretUserKey+"&usage%5Bnope%5D=1", "", "", "")
	refuse(t, "GET", base+"/transactions/authorize.xml?provider_key="+secretProvider+"&user_key="+secretUserKey2+"&app_id=u1", "", "", "")
	refuse(t, "GET", base+"/transactions/authorize.xml?service_token="+secretSvcTok2+"&service_id=sa&app_id=a1&app_key="+secretAppKey+"x&referrer=evil.example.com", "", "", "")
	refuse(t, "GET", base+"/transactions/oauth_authrep.xml?service_token="+secretSvcTok2+"&service_id=so&app_id=o1&redirect_url=https://evil.example.com/"+secretOAuthKey, "", "", "")
	refuse(t, "POST", base+"/transactions.xml", "", "application/x-www-form-urlencoded",
		"service_token="+secretSvcTok+"&service_id=su&transactions[0][user_key]="+secretUserKey+"&transactions[0][usage][hits]=9223372036854775807&transactions[0][timestamp]=yesterday")
	refuse(t, "POST", base+"/transactions.xml?provider_key="+secretProvider, "", "text/plain", secretUserKey)
	adm := base + "/admin/api/v1/services/"
	refuse(t, "GET", base+"/admin/api/v1/config", secretQuery, "", "")
	refuse(t, "GET", base+"/admin/nothing", secretAdmin, "", "")
	refuse(t, "PUT", adm+"su/applications/u9", secretAdmin, "application/json", `{"plan":"p","user_key":`+"12"+`,"keys":["`+secretAppKey+`"]}`)
	refuse(t, "PUT", adm+"su/applications/u9", secretAdmin, "application/json", `{"plan":"p","user_key":"`+secretUserKey+`"}`)
	refuse(t, "PUT", adm+"sa/applications/a1/keys/"+url.PathEscape(secretAppKey), secretAdmin, "", "")
	refuse(t, "POST", adm+"sa/applications/a1/keys", secretAdmin, "application/json", `{"key":"`+secretAppKey2+`"}`)
	refuse(t, "POST", adm+"sa/applications/a1/keys", secretAdmin, "application/json", `{"key":"`+secretAppKey2+` with space"}`)
	refuse(t, "PUT", adm+"su", secretAdmin, "application/json", `{"provider_key":"`+secretSvcTok2+`","tokens":["`+secretQuery+`"]}`)
	refuse(t, "PUT", adm+"su", secretAdmin, "application/json", `{"provider_key":"`+secretSvcTok2)
	refuse(t, "PUT", adm+"su", secretAdmin, "application/json", strings.Repeat("x", 2<<20))
	// A utilization alert whose webhook (a URL with a secret in its path
	// and query) cannot be reached: the rollup retries, then logs the
	// failure when it stops.
	// u2: the hostile calls above may have filled u1's minute (a report with
	// an unreadable timestamp counts as now).
	if resp, err := http.Get(base + "/transactions/authrep.xml?service_token=" + secretSvcTok + "&service_id=su&user_key=" + secretUserKey2 + "&usage%5Bhits%5D=3"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("authrep to 60 %%: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get(base + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			// At least this alert (the hostile report above may have
			// raised u1's).
			if m := regexp.MustCompile(`\nsluice_alerts_sent_total ([1-9][0-9]*)\n`).FindSubmatch(b); m != nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the alert did not reach the alerts topic within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // the rollup's first attempt
	qbase := "http://" + queryAddr
	refuse(t, "GET", qbase+"/api/v1/usage?service_id=su&metric=hits&from=yesterday", secretQuery, "", "")
	refuse(t, "GET", qbase+"/api/v1/usage?service_id=sa&metric=nope", secretAdmin, "", "")
	refuse(t, "GET", qbase+"/stats/services/su/usage.json?metric_name=hits&period=day&access_token="+secretQuery2, "", "", "")
	refuse(t, "GET", qbase+"/api/v1/export?month=2026-13", secretQuery+"x", "", "")
	refuse(t, "GET", "http://"+opsAddr+"/metrics?token="+secretAdmin, secretQuery, "", "")

	// Broken HTTP over raw sockets, on every listener.
	type target struct{ addr, path, header string }
	targets := []target{
		{apiAddr, "/transactions/authrep.xml?service_token=" + secretSvcTok + "&service_id=su&user_key=" + secretUserKey, ""},
		{apiAddr, "/transactions/authorize.xml?provider_key=" + secretProvider + "&app_id=a1&app_key=" + secretAppKey, "3scale-options: " + secretOAuthKey + "\r\n"},
		{apiAddr, "/transactions.xml?service_token=" + secretSvcTok2 + "&transactions[0][app_key]=" + secretAppKey2, ""},
		{apiAddr, "/admin/api/v1/services/sa/applications/a1/keys/" + secretAppKey, "Authorization: Bearer " + secretAdmin + "\r\n"},
		{apiAddr, "/status?" + secretUserKey2, "Authorization: Bearer " + secretAdmin + "\r\n"},
		{queryAddr, "/stats/applications/u1/usage.json?service_id=su&metric_name=hits&access_token=" + secretQuery, ""},
		{queryAddr, "/api/v1/usage?service_id=su&metric=hits", "Authorization: Bearer " + secretQuery2 + "\r\n"},
		{opsAddr, "/metrics?" + secretProvider, "Authorization: Bearer " + secretAdmin + "\r\n"},
	}
	hello := clientHello(t)
	sent := 0
	for _, tg := range targets {
		for _, raw := range brokenHTTP(tg.path, tg.header) {
			sendRaw(t, tg.addr, []byte(raw))
			sent++
		}
		sendRaw(t, tg.addr, hello)
	}
	t.Logf("sent %d broken requests", sent)

	// Stopping flushes whatever the processes still hold.
	if err := rollup.Stop(30 * time.Second); err != nil {
		t.Error(err)
	}
	if err := api.Stop(30 * time.Second); err != nil {
		t.Error(err)
	}
	out, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "alerts: webhook delivery failed") {
		t.Error("the failed webhook delivery is not in the rollup's log")
	}
	for _, s := range secrets {
		if i := strings.Index(string(out), s); i >= 0 {
			from, to := max(0, i-200), min(len(out), i+len(s)+60)
			t.Errorf("a credential is in the processes' output: …%q…", out[from:to])
		}
	}
	// The test means something only if the servers' own messages about
	// broken requests were logged at all.
	if !strings.Contains(string(out), "level=DEBUG") || !strings.Contains(string(out), "component=http") {
		t.Errorf("no debug message of the HTTP servers in the output: is --log-level (SLUICE_LOG_LEVEL) in effect?\n%s", TailFile(logPath, 3000))
	}
}

// clientHello returns the first record a TLS client sends, for the
// listeners' plain-HTTP ports.
func clientHello(t *testing.T) []byte {
	t.Helper()
	cli, srv := net.Pipe()
	defer srv.Close()
	go func() {
		tls.Client(cli, &tls.Config{ServerName: secretAdmin + ".example"}).Handshake()
		cli.Close()
	}()
	buf := make([]byte, 64<<10)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := srv.Read(buf)
	if err != nil || n < 5 || buf[0] != 0x16 {
		t.Fatalf("capture a ClientHello: %d bytes, %v", n, err)
	}
	return buf[:n]
}
