package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/3scale/3scale-go-client/threescale"
	"github.com/3scale/3scale-go-client/threescale/api"
	threescalehttp "github.com/3scale/3scale-go-client/threescale/http"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/chlocal"
	"github.com/sluice-dev/sluice/internal/kafkaconn"
	"github.com/sluice-dev/sluice/internal/tlsconf"
	"github.com/sluice-dev/sluice/internal/tlsconf/tlstest"
)

const (
	testSASLPassword = "kafka-s3cret-pw"
	testCHPassword   = "clickhouse-s3cret-pw"
)

// secureKafka starts a broker that requires TLS (with certs) and
// SCRAM-SHA-512 as user sluice.
func secureKafka(t *testing.T, certs tlstest.Files) string {
	t.Helper()
	return startKfake(t, kfake.TLS(certs.ServerConfig(t)), kfake.EnableSASL(),
		kfake.Superuser(kafkaconn.ScramSHA512, "sluice", testSASLPassword))
}

// secureClickHouse starts a ClickHouse whose default user has a password and
// which serves the native protocol over TLS.
func secureClickHouse(t *testing.T, certs tlstest.Files) *chlocal.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs clickhouse-server")
	}
	s, err := chlocal.Start(context.Background(), chlocal.Options{Dir: t.TempDir(), TLSCert: certs.ServerCert, TLSKey: certs.ServerKey, Password: testCHPassword})
	if err != nil {
		t.Fatalf("start ClickHouse (apt-get install -y clickhouse-server clickhouse-client): %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// TestServeSecureConnections: a node reaches a Kafka that requires TLS and
// SASL/SCRAM and a ClickHouse that requires TLS and a password (secrets from
// the environment), serves the API over HTTPS to the 3scale Go client, and
// its rollup writes the usage; no secret reaches the log.
func TestServeSecureConnections(t *testing.T) {
	certs := tlstest.New(t)
	brokers := secureKafka(t, certs)
	ch := secureClickHouse(t, certs)
	t.Setenv("SLUICE_KAFKA_SASL_PASSWORD", testSASLPassword)
	t.Setenv("SLUICE_CLICKHOUSE_PASSWORD", testCHPassword)
	cfgFile := writeConfig(t, `tenants:
  - id: acme
    admin_token: adm-tls-test
    services:
      - id: svc
        tokens: [st-tls]
        metrics: [{name: hits}]
        plans:
          - id: basic
            limits: [{metric: hits, period: minute, max: 100}]
        applications:
          - {id: app1, plan: basic, user_key: uk-tls}
`)
	listen, queryListen := freeAddr(t), freeAddr(t)
	errs := startServe(t, "serve", "--roles", "api,rollup,query", "--listen", listen, "--query-listen", queryListen,
		"--data-dir", t.TempDir(), "--node", "tls", "--config", cfgFile,
		"--kafka", brokers, "--kafka-tls-ca", certs.CA, "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-user", "sluice",
		"--clickhouse", ch.SecureAddr(), "--clickhouse-tls-ca", certs.CA,
		"--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey)

	httpsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := httpsClient.Get("https://" + listen + "/status")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("https /status not ready within 60s (last: %v); log:\n%s", err, errs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	c, err := threescalehttp.NewClient("https://"+listen, httpsClient)
	if err != nil {
		t.Fatal(err)
	}
	req := threescale.Request{Auth: api.ClientAuth{Type: api.ServiceToken, Value: "st-tls"}, Service: "svc",
		Transactions: []api.Transaction{{Params: api.Params{UserKey: "uk-tls"}, Metrics: api.Metrics{"hits": 3}}}}
	for i := 1; i <= 2; i++ {
		res, err := c.AuthRep(req)
		if err != nil || !res.Authorized {
			t.Fatalf("AuthRep %d over HTTPS = %+v, %v", i, res, err)
		}
		if cur := res.UsageReports["hits"][0].CurrentValue; cur != 3*i {
			t.Fatalf("AuthRep %d: hits current %d, want %d", i, cur, 3*i)
		}
	}

	// HTTPS only: a plain HTTP call gets no answer.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + listen + "/status"); err == nil {
		resp.Body.Close()
		t.Fatalf("plain HTTP on the TLS listener answered %d", resp.StatusCode)
	}
	// The query API is HTTPS too.
	resp, err := httpsClient.Get("https://" + queryListen + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("query API over HTTPS: %v %v", resp, err)
	}
	resp.Body.Close()

	// The rollup consumed the events over TLS+SCRAM and wrote them over
	// TLS with the password.
	conn, err := chschema.Connect(context.Background(), chschema.ConnOptions{Addr: ch.SecureAddr(), Password: testCHPassword, TLS: tlsconf.Client{CAFile: certs.CA}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline = time.Now().Add(30 * time.Second)
	for {
		var sum int64
		err := conn.QueryRow(context.Background(), "SELECT toInt64(sum(value)) FROM sluice.usage_minute WHERE app_id = 'app1' AND metric = 'hits'").Scan(&sum)
		if err == nil && sum == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollup wrote hits %d (%v), want 6; log:\n%s", sum, err, errs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Export reads the same ClickHouse with the same flags.
	var out, exportErrs bytes.Buffer
	month := time.Now().UTC().AddDate(0, -1, 0).Format("2006-01")
	if code := run(context.Background(), []string{"export", "--month", month, "--clickhouse", ch.SecureAddr(), "--clickhouse-tls-ca", certs.CA}, &out, &exportErrs); code != 0 {
		t.Fatalf("export over TLS exited %d: %s", code, exportErrs.String())
	}

	for _, secret := range []string{testSASLPassword, testCHPassword} {
		if strings.Contains(errs.String(), secret) || strings.Contains(exportErrs.String(), secret) {
			t.Errorf("a password is in the log")
		}
	}
}

// TestServeConnectionErrors: credentials or certificates the servers reject
// stop the command at once with an error naming the connection and the
// cause, and without the password.
func TestServeConnectionErrors(t *testing.T) {
	certs := tlstest.New(t)
	other := tlstest.New(t) // a CA that signed neither server's certificate
	brokers := secureKafka(t, certs)
	ch := secureClickHouse(t, certs)
	kafkaOK := []string{"--kafka", brokers, "--kafka-tls-ca", certs.CA, "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-user", "sluice"}
	serveAPI := func(extra ...string) []string {
		return append([]string{"serve", "--roles", "api", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, extra...)
	}
	queryNode := func(extra ...string) []string {
		return append([]string{"serve", "--roles", "query", "--config-log", "file", "--listen", "127.0.0.1:0", "--query-listen", "127.0.0.1:0",
			"--data-dir", t.TempDir(), "--clickhouse", ch.SecureAddr()}, extra...)
	}
	kafkaName := "kafka (--kafka " + brokers + "): "
	chName := "clickhouse " + ch.SecureAddr() + ": "
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		want     []string
	}{
		{"wrong SASL password", serveAPI(kafkaOK...), map[string]string{"SLUICE_KAFKA_SASL_PASSWORD": "wrong-pw"}, 1,
			[]string{kafkaName + "SASL authentication failed"}},
		{"untrusted kafka certificate", serveAPI("--kafka", brokers, "--kafka-tls-ca", other.CA, "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-user", "sluice"),
			map[string]string{"SLUICE_KAFKA_SASL_PASSWORD": testSASLPassword}, 1,
			[]string{kafkaName + "TLS handshake failed", "x509: certificate signed by unknown authority"}},
		{"plaintext to the TLS broker", serveAPI("--kafka", brokers), nil, 1,
			[]string{kafkaName, "require TLS or SASL"}},
		{"unknown SASL mechanism", serveAPI("--kafka", brokers, "--kafka-sasl-mechanism", "GSSAPI", "--kafka-sasl-user", "sluice"), nil, 1,
			[]string{kafkaName, `mechanism "GSSAPI"`}},
		{"config export with a wrong SASL password", append([]string{"config", "export"}, kafkaOK...), map[string]string{"SLUICE_KAFKA_SASL_PASSWORD": "wrong-pw"}, 1,
			[]string{kafkaName + "SASL authentication failed"}},
		{"wrong ClickHouse password", queryNode("--clickhouse-tls-ca", certs.CA), map[string]string{"SLUICE_CLICKHOUSE_PASSWORD": "wrong-pw"}, 1,
			[]string{chName + `authentication of user "default" failed`}},
		{"untrusted ClickHouse certificate", queryNode("--clickhouse-tls-ca", other.CA), map[string]string{"SLUICE_CLICKHOUSE_PASSWORD": testCHPassword}, 1,
			[]string{chName, "x509: certificate signed by unknown authority"}},
		{"migrate with an untrusted ClickHouse certificate", []string{"migrate", "--clickhouse", ch.SecureAddr(), "--clickhouse-tls"},
			map[string]string{"SLUICE_CLICKHOUSE_PASSWORD": testCHPassword}, 1,
			[]string{chName, "x509: certificate signed by unknown authority"}},
		{"export with a wrong ClickHouse password", []string{"export", "--month", "2020-01", "--clickhouse", ch.SecureAddr(), "--clickhouse-tls-ca", certs.CA},
			map[string]string{"SLUICE_CLICKHOUSE_PASSWORD": "wrong-pw"}, 1,
			[]string{chName + `authentication of user "default" failed`}},
		{"tls-cert without tls-key", serveAPI("--kafka", brokers, "--tls-cert", certs.ServerCert), nil, 2,
			[]string{"--tls-cert and --tls-key go together"}},
		{"tls-ca without tls-cert", serveAPI("--kafka", brokers, "--tls-ca", certs.CA), nil, 2,
			[]string{"--tls-ca applies with --tls-cert"}},
		{"unreadable listener certificate", queryNode("--clickhouse-tls-ca", certs.CA, "--tls-cert", "/nonexistent/cert.pem", "--tls-key", certs.ServerKey),
			map[string]string{"SLUICE_CLICKHOUSE_PASSWORD": testCHPassword}, 1,
			[]string{"--tls-cert", "/nonexistent/cert.pem"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var out, errs bytes.Buffer
			code := run(ctx, tc.args, &out, &errs)
			if code != tc.wantCode {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, errs.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(errs.String(), w) {
					t.Errorf("stderr does not contain %q:\n%s", w, errs.String())
				}
			}
			for _, secret := range []string{testSASLPassword, testCHPassword, "wrong-pw"} {
				if strings.Contains(errs.String(), secret) {
					t.Errorf("stderr shows a password:\n%s", errs.String())
				}
			}
		})
	}
}

// TestServeForwardsOverTLS: API nodes serving HTTPS forward calls to each
// other over TLS, trusting --tls-ca. A node that does not trust the others'
// certificates cannot reach them: its calls are decided under the
// owner-unreachable policy (never sent, so never counted twice), not
// answered 503 as a broken forward.
func TestServeForwardsOverTLS(t *testing.T) {
	const partitions = 6
	certs := tlstest.New(t)
	brokers := startKfake(t, kfake.SeedTopics(partitions, event.Topic))
	var apps strings.Builder
	for i := range 12 {
		fmt.Fprintf(&apps, "          - {id: f%d, plan: exact, user_key: uk-f%d}\n", i, i)
	}
	cfgFile := writeConfig(t, `tenants:
  - id: acme
    admin_token: adm-fwd-tls
    services:
      - id: svc
        tokens: [st-fwd-tls]
        metrics: [{name: hits}]
        plans:
          - id: exact
            limits: [{metric: hits, period: minute, max: 1000}]
        applications:
`+apps.String())
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}}}
	start := func(name string, extra ...string) string {
		listen := freeAddr(t)
		errs := startServe(t, append([]string{"serve", "--roles", "api", "--kafka", brokers, "--listen", listen, "--region", "fwdtls",
			"--data-dir", t.TempDir(), "--node", name, "--config", cfgFile, "--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey}, extra...)...)
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := client.Get("https://" + listen + "/status")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return listen
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s not ready over HTTPS within 60s; log:\n%s", name, errs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	metric := func(listen, name string) float64 {
		resp, err := client.Get("https://" + listen + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %q", name, line)
				}
				return f
			}
		}
		t.Fatalf("no %s on %s", name, listen)
		return 0
	}
	// callAll makes one authrep per application on listen; every one must be
	// authorized.
	callAll := func(listen string) {
		for i := range 12 {
			resp, err := client.Get(fmt.Sprintf("https://%s/transactions/authrep.xml?service_token=st-fwd-tls&service_id=svc&user_key=uk-f%d&usage%%5Bhits%%5D=1", listen, i))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("authrep f%d on %s = %d %s", i, listen, resp.StatusCode, b)
			}
		}
	}
	// until repeats callAll on listen until cond holds.
	until := func(what, listen string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60s", what)
			}
			callAll(listen)
		}
	}

	a := start("a", "--tls-ca", certs.CA)
	b := start("b", "--tls-ca", certs.CA)
	until("node a forwards calls to node b over TLS", a, func() bool { return metric(a, "sluice_cluster_forwarded_total") > 0 })
	if n := metric(b, "sluice_cluster_relayed_total"); n == 0 {
		t.Errorf("node b decided no forwarded call")
	}

	c := start("c") // trusts the system pool only
	until("node c meets owners it cannot verify", c, func() bool { return metric(c, "sluice_cluster_owner_unreachable_total") > 0 })
	if n := metric(c, "sluice_cluster_forward_errors_total"); n != 0 {
		t.Errorf("node c counted %v broken forwards: a failed TLS handshake is an unreachable owner", n)
	}
	for _, n := range []string{a, b} {
		if e := metric(n, "sluice_cluster_forward_errors_total"); e != 0 {
			t.Errorf("%s: %v broken forwards", n, e)
		}
	}
}
