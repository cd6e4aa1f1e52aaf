package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/ingest/alerts"
	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/cluster"
	"github.com/sluice-dev/sluice/ingest/configlog"
	"github.com/sluice-dev/sluice/ingest/configlog/kafkalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/gateway"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/ingest/region"
	"github.com/sluice-dev/sluice/ingest/rollup"
	"github.com/sluice-dev/sluice/internal/chlocal"
	"github.com/sluice-dev/sluice/internal/flagenv"
	"github.com/sluice-dev/sluice/internal/kafkaconn"
)

// defaultUsagePartitions is the partition count of the usage topic when
// Sluice creates it: room for several rollup consumers.
const defaultUsagePartitions = 12

// maxUsagePartitions bounds --topic-partitions.
const maxUsagePartitions = 10000

// commonFlags are the node flags serve and dev share; --log-level sets
// level, the level of the command's logger.
func commonFlags(fs *flag.FlagSet, cfg *nodeConfig, level *slog.LevelVar) {
	fs.TextVar(level, "log-level", new(slog.LevelVar), // the zero LevelVar is info
		"least important log messages written: debug (also every malformed request a listener refuses; no request bytes), info, warn or error")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:3001", "address of the Service Management API, admin API and /metrics")
	fs.StringVar(&cfg.QueryListen, "query-listen", "127.0.0.1:3002", "address of the query API")
	cfg.TLS.flags(fs)
	registerQueryFlags(fs, cfg)
	fs.StringVar(&cfg.DataDir, "data-dir", "./.sluice", "directory for the config log and the event spool (dev: also the broker's log and ClickHouse's data)")
	fs.StringVar(&cfg.ConfigFile, "config", "", "declarative configuration file (YAML or JSON) applied at startup")
	fs.StringVar(&cfg.Topic, "topic", event.Topic, "Kafka topic of usage events")
	cfg.TopicPartitions = defaultUsagePartitions
	fs.Var((*partitionsFlag)(&cfg.TopicPartitions), "topic-partitions", "partitions of the usage topic when Sluice creates it (an existing topic is left as it is)")
	fs.StringVar(&cfg.AlertsTopic, "alerts-topic", alerts.Topic, "Kafka topic of utilization alerts")
	fs.StringVar(&cfg.Database, "database", chschema.DefaultDatabase, "ClickHouse database")
	fs.StringVar(&cfg.Region, "region", "local", "region of this node: recorded on usage events; the API nodes of a region share limits (Kafka group sluice-api-REGION)")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "URL where API gateways reach this node's --listen: the backend endpoint of the gateway configuration served to APIcast (default: http(s)://the listen address, with this host's name when it listens on all interfaces)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "HOST:PORT where the other API nodes of the region reach this node's --listen (default: the listen address, with this host's name when it listens on all interfaces)")
	fs.DurationVar(&cfg.HandoffTimeout, "handoff-timeout", cluster.DefaultHandoffTimeout, "how long a call waits while its application's partition moves between API nodes before it gets 503 with Retry-After")
	fs.Var((*unreachableFlag)(&cfg.OwnerUnreachable), "owner-unreachable", "when an application's owning API node cannot be reached: local (decide from this node's counters, counted in /metrics) or refuse (503)")
	fs.Var((*peersFlag)(&cfg.PeerSpecs), "peer-region", "NAME=HOST:PORT[,HOST:PORT...]: another region's Kafka cluster, whose usage counts toward this region's global limits; repeat the flag (or separate peers by spaces in the variable, also read as SLUICE_PEER_REGIONS) for several")
	fs.DurationVar(&cfg.PeerRestoreSpan, "peer-restore-span", region.DefaultRestoreSpan, "how far back a starting API node reads the peer regions' usage: the oldest open window of a global limit, at most this")
	fs.DurationVar(&cfg.PeerRestoreTimeout, "peer-restore-timeout", 10*time.Second, "how long a starting API node waits to read the peer regions' usage up to where it ended before it reports ready (a peer still behind is caught up in the background)")
	fs.StringVar(&cfg.Node, "node", hostname(), "node name recorded on usage events and used as the rollup's static member id")
	fs.Int64Var(&cfg.SpoolMax, "spool-max-bytes", 1<<30, "bound of the on-disk event spool used while Kafka is unreachable")
	fs.Var((*policyFlag)(&cfg.FullPolicy), "spool-full", "when the spool is full: refuse (answer 503) or drop (count and drop)")
	fs.BoolVar(&cfg.Raw, "raw-events", false, "rollup also stores every raw event in ClickHouse")
	fs.DurationVar(&cfg.RollupBatchWait, "rollup-batch-wait", rollup.DefaultMaxBatchWait, "how long the rollup lets a batch of events fill before writing it to ClickHouse: usage is visible in ClickHouse about this long after the call; shorter batches cost ClickHouse more rows")
	cfg.Envoy.flags(fs)
}

// clusterDefaults validates the cluster and listener flags and fills
// --advertise from --listen.
func clusterDefaults(cfg *nodeConfig) error {
	if err := cfg.TLS.check(); err != nil {
		return err
	}
	if err := cfg.Envoy.check(); err != nil {
		return err
	}
	if err := region.CheckName(cfg.Region); err != nil {
		return usageError{"--region: " + err.Error()}
	}
	if len(cfg.PeerSpecs) == 0 {
		// The plural spelling of the environment variable, for a list.
		if v := os.Getenv("SLUICE_PEER_REGIONS"); v != "" {
			cfg.PeerSpecs = append(cfg.PeerSpecs, v)
		}
	}
	peers, err := region.ParsePeers(cfg.PeerSpecs, cfg.Region)
	if err != nil {
		return usageError{"--peer-region: " + err.Error()}
	}
	cfg.Peers = peers
	if cfg.PeerRestoreSpan <= 0 || cfg.PeerRestoreTimeout < 0 {
		return usageError{"--peer-restore-span must be positive and --peer-restore-timeout not negative"}
	}
	if cfg.HandoffTimeout <= 0 {
		return usageError{"--handoff-timeout must be positive"}
	}
	if cfg.RollupBatchWait <= 0 {
		return usageError{"--rollup-batch-wait must be positive"}
	}
	if cfg.Advertise == "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return usageError{fmt.Sprintf("--listen %q: %v", cfg.Listen, err)}
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = hostname()
		}
		cfg.Advertise = net.JoinHostPort(host, port)
	}
	if _, _, err := net.SplitHostPort(cfg.Advertise); err != nil {
		return usageError{fmt.Sprintf("--advertise %q: %v", cfg.Advertise, err)}
	}
	if cfg.PublicURL == "" {
		host, port, _ := net.SplitHostPort(cfg.Listen)
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = hostname()
		}
		cfg.PublicURL = cfg.TLS.scheme() + "://" + net.JoinHostPort(host, port)
	}
	if _, err := gateway.New(gateway.Options{PublicURL: cfg.PublicURL}); err != nil {
		return usageError{fmt.Sprintf("--public-url: %v", err)}
	}
	return nil
}

// peersFlag collects --peer-region values.
type peersFlag []string

func (f *peersFlag) String() string { return strings.Join(*f, " ") }

func (f *peersFlag) Set(s string) error {
	*f = append(*f, s)
	return nil
}

// unreachableFlag parses --owner-unreachable.
type unreachableFlag cluster.Policy

func (f *unreachableFlag) String() string { return cluster.Policy(*f).String() }

func (f *unreachableFlag) Set(s string) error {
	p, err := cluster.ParsePolicy(s)
	if err != nil {
		return err
	}
	*f = unreachableFlag(p)
	return nil
}

// policyFlag parses --spool-full with the producer's own parser.
type policyFlag kafka.FullPolicy

func (f *policyFlag) String() string { return kafka.FullPolicy(*f).String() }

func (f *policyFlag) Set(s string) error {
	p, err := kafka.ParseFullPolicy(s)
	if err != nil {
		return fmt.Errorf("--spool-full must be refuse or drop, not %q", s)
	}
	*f = policyFlag(p)
	return nil
}

// partitionsFlag parses --topic-partitions.
type partitionsFlag int32

func (f *partitionsFlag) String() string { return strconv.Itoa(int(*f)) }

func (f *partitionsFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxUsagePartitions {
		return fmt.Errorf("--topic-partitions must be an integer from 1 to %d, not %q", maxUsagePartitions, s)
	}
	*f = partitionsFlag(n)
	return nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "sluice"
	}
	return h
}

// cmdDev runs every role in one process with an embedded Kafka-protocol broker
// and a local ClickHouse server, both keeping their data under --data-dir.
func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger, level *slog.LevelVar) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := nodeConfig{Demo: true, CH: chschema.ConnOptions{User: chschema.DefaultUser}}
	commonFlags(fs, &cfg, level)
	kafkaListen := fs.String("kafka-listen", "", "pin the embedded broker to 127.0.0.1:PORT (default a free port), so that `sluice serve` nodes can join this instance; the configuration then lives on the broker's config topic")
	fs.Usage = flagenv.Usage(fs, "sluice dev [flags]")
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	cfg.Roles, _ = parseRoles("all")
	if err := clusterDefaults(&cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	var brokerPort int
	var err error
	if *kafkaListen != "" {
		// A pinned broker address is for other nodes to join: they share
		// the configuration through the broker's config topic.
		if brokerPort, err = listenPort(*kafkaListen); err != nil {
			return usageError{fmt.Sprintf("--kafka-listen: %v", err)}
		}
		cfg.ConfigLog, cfg.ConfigTopic = configLogKafka, kafkalog.DefaultTopic
	} else if brokerPort, err = freePort(); err != nil {
		return err
	}
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(brokerPort),
		kfake.DataDir(filepath.Join(cfg.DataDir, "kafka")),
		kfake.SeedTopics(cfg.TopicPartitions, cfg.Topic),
	)
	if err != nil {
		return fmt.Errorf("embedded broker: %w", err)
	}
	defer cluster.Close()
	cfg.Brokers = cluster.ListenAddrs()
	log.Info("embedded Kafka-protocol broker running", "addr", strings.Join(cfg.Brokers, ","), "dir", filepath.Join(cfg.DataDir, "kafka"))

	ch, err := chlocal.Start(ctx, chlocal.Options{Dir: filepath.Join(cfg.DataDir, "clickhouse")})
	if err != nil {
		return fmt.Errorf("local ClickHouse: %w", err)
	}
	defer ch.Stop()
	cfg.CH.Addr = ch.Addr()
	log.Info("local ClickHouse running", "addr", ch.Addr(), "dir", filepath.Join(cfg.DataDir, "clickhouse"))
	fmt.Fprintf(stdout, "Kafka (embedded broker): %s\nClickHouse (native):     %s\nAnother API node joins with:\n  sluice serve --roles api --kafka %s --clickhouse %s --listen 127.0.0.1:PORT --data-dir DIR\n",
		strings.Join(cfg.Brokers, ","), ch.Addr(), strings.Join(cfg.Brokers, ","), ch.Addr())
	if err := migrate(ctx, cfg.CH, cfg.Database); err != nil {
		return err
	}
	return runNode(ctx, cfg, stdout, log)
}

// cmdServe runs the chosen roles against external Kafka and ClickHouse.
func cmdServe(ctx context.Context, args []string, stderr io.Writer, log *slog.Logger, level *slog.LevelVar) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg nodeConfig
	commonFlags(fs, &cfg, level)
	roles := fs.String("roles", "api,rollup,query", "roles this process runs: api, rollup, query (comma separated) or all")
	brokers := fs.String("kafka", "", "Kafka seed brokers, HOST:PORT,... (required)")
	kafkaConnFlags(fs, &cfg.Kafka)
	fs.StringVar(&cfg.CH.Addr, "clickhouse", "", "ClickHouse native-protocol address HOST:PORT (required for rollup and query)")
	chConnFlags(fs, &cfg.CH)
	fs.StringVar(&cfg.ConfigLog, "config-log", configLogKafka, "where configuration changes are kept: kafka (the compacted topic every node shares) or file (this node's data dir only)")
	fs.StringVar(&cfg.ConfigTopic, "config-topic", kafkalog.DefaultTopic, "Kafka topic of configuration changes (one partition, compacted)")
	fs.Usage = flagenv.Usage(fs, "sluice serve --roles api,rollup,query --kafka HOST:PORT,... --clickhouse HOST:PORT [flags]")
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Roles, err = parseRoles(*roles); err != nil {
		return err
	}
	cfg.Brokers = splitList(*brokers)
	if err := clusterDefaults(&cfg); err != nil {
		return err
	}
	if cfg.ConfigLog != configLogKafka && cfg.ConfigLog != configLogFile {
		return usageError{fmt.Sprintf("--config-log must be kafka or file, not %q", cfg.ConfigLog)}
	}
	// A query-only node with a file config log never talks to Kafka.
	needsKafka := cfg.Roles[roleAPI] || cfg.Roles[roleRollup] || cfg.ConfigLog == configLogKafka
	if needsKafka && len(cfg.Brokers) == 0 {
		return usageError{"--kafka is required (a query-only node with --config-log file is the one that runs without it)"}
	}
	if (cfg.Roles[roleRollup] || cfg.Roles[roleQuery]) && cfg.CH.Addr == "" {
		return usageError{"--clickhouse is required for the rollup and query roles"}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if needsKafka {
		if cfg.KafkaOpts, err = kafkaClientOpts(ctx, cfg.Brokers, cfg.Kafka); err != nil {
			return err
		}
	}
	if cfg.CH.Addr != "" {
		if err := migrate(ctx, cfg.CH, cfg.Database); err != nil {
			return err
		}
	}
	return runNode(ctx, cfg, io.Discard, log)
}

// cmdMigrate applies the ClickHouse schema migrations.
func cmdMigrate(ctx context.Context, args []string, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ch chschema.ConnOptions
	fs.StringVar(&ch.Addr, "clickhouse", "127.0.0.1:9000", "ClickHouse native-protocol address HOST:PORT")
	db := fs.String("database", chschema.DefaultDatabase, "ClickHouse database")
	chConnFlags(fs, &ch)
	fs.Usage = flagenv.Usage(fs, "sluice migrate [flags]")
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	if err := migrate(ctx, ch, *db); err != nil {
		return err
	}
	log.Info("schema up to date", "clickhouse", ch.Addr, "database", *db)
	return nil
}

// migrate connects to ClickHouse and applies the schema migrations. A
// connection that fails (wrong password, untrusted certificate) is an error
// naming the server.
func migrate(ctx context.Context, ch chschema.ConnOptions, db string) error {
	conn, err := chschema.Connect(ctx, ch)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := chschema.Migrate(ctx, conn, db); err != nil {
		return fmt.Errorf("migrate %s: %w", ch.Addr, err)
	}
	return nil
}

// cmdConfig validates a configuration file or exports the current one.
func cmdConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"want `config validate FILE`, `config export [--data-dir DIR] [--format yaml|json]` or `config promote --service S`"}
	}
	switch args[0] {
	case "validate":
		if len(args) != 2 {
			return usageError{"want `config validate FILE`"}
		}
		doc, err := catalog.Load(args[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: valid (%d tenants)\n", args[1], len(doc.Tenants))
		return nil
	case "export":
		fs := flag.NewFlagSet("config export", flag.ContinueOnError)
		fs.SetOutput(stderr)
		dir := fs.String("data-dir", "./.sluice", "data directory of the node whose config log to read")
		format := fs.String("format", "yaml", "yaml or json")
		brokers := fs.String("kafka", "", "read the cluster's config topic on these brokers (HOST:PORT,...) instead of the data dir's file")
		topic := fs.String("config-topic", kafkalog.DefaultTopic, "Kafka topic of configuration changes (with --kafka)")
		var kc kafkaconn.Options
		kafkaConnFlags(fs, &kc)
		fs.Usage = flagenv.Usage(fs, "sluice config export [flags]")
		if err := flagenv.Parse(fs, args[1:]); err != nil {
			return err
		}
		doc, err := readConfig(ctx, *dir, splitList(*brokers), *topic, kc)
		if err != nil {
			return err
		}
		switch *format {
		case "yaml":
			return doc.WriteYAML(stdout)
		case "json":
			return doc.WriteJSON(stdout)
		}
		return usageError{fmt.Sprintf("--format must be yaml or json, not %q", *format)}
	case "promote":
		return cmdConfigPromote(ctx, args[1:], stdout, stderr)
	}
	return usageError{fmt.Sprintf("unknown config command %q (want validate, export or promote)", args[0])}
}

// readConfig reads a node's file config log, or with brokers the cluster's
// config topic.
func readConfig(ctx context.Context, dir string, brokers []string, topic string, kc kafkaconn.Options) (*catalog.Document, error) {
	if len(brokers) == 0 {
		return configlog.ReadFile(filepath.Join(dir, "config"))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	opts, err := kafkaClientOpts(ctx, brokers, kc)
	if err != nil {
		return nil, err
	}
	l, err := kafkalog.Open(ctx, kafkalog.Options{Brokers: brokers, Topic: topic, ClientOpts: opts})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return configlog.ReadLog(ctx, l)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// listenPort parses the port of a loopback HOST:PORT for the embedded
// broker, which listens on 127.0.0.1.
func listenPort(addr string) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	if host != "" && host != "127.0.0.1" && host != "localhost" {
		return 0, fmt.Errorf("the embedded broker listens on 127.0.0.1 only, not %q", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return 0, fmt.Errorf("bad port %q", port)
	}
	return n, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// printDemo prints the demo tenant's credentials and a ready-to-paste call.
func printDemo(w io.Writer, scheme, listen string, c catalog.DemoCredentials) {
	base := scheme + "://" + listen
	fmt.Fprintf(w, `
Sluice dev is up. Demo tenant %q:
  service_id     %s
  service_token  %s
  provider_key   %s
  app            %s (plan %s: hits 100/minute and 100000/month, search 5 per sliding 10s)
  user_key       %s
  admin token    %s   (admin API: %s%s, Authorization: Bearer <token>)
  query token    %s

Try:
  curl -s "%s/transactions/authrep.xml?service_token=%s&service_id=%s&user_key=%s&usage%%5Bhits%%5D=1"

APIcast (gateway configuration from this node):
  THREESCALE_PORTAL_ENDPOINT=%s://<admin token>@%s THREESCALE_DEPLOYMENT_ENV=production

`, catalog.DemoTenantID, catalog.DemoServiceID, c.ServiceToken, c.ProviderKey,
		catalog.DemoAppID, catalog.DemoPlanID, c.UserKey, c.AdminToken, base, "/admin/api/v1/config", c.QueryToken,
		base, c.ServiceToken, catalog.DemoServiceID, c.UserKey, scheme, listen)
}
