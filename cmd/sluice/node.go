package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/admin"
	"github.com/sluice-dev/sluice/ingest/alerts"
	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/cluster"
	"github.com/sluice-dev/sluice/ingest/configlog"
	"github.com/sluice-dev/sluice/ingest/configlog/kafkalog"
	"github.com/sluice-dev/sluice/ingest/envoyrls"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/gateway"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/ingest/region"
	"github.com/sluice-dev/sluice/ingest/restore"
	"github.com/sluice-dev/sluice/ingest/rollup"
	"github.com/sluice-dev/sluice/ingest/smapi"
	"github.com/sluice-dev/sluice/internal/httpserver"
	"github.com/sluice-dev/sluice/internal/kafkaconn"
	"github.com/sluice-dev/sluice/internal/kafkatopic"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/limiter"
)

// roles a node can run.
const (
	roleAPI    = "api"
	roleRollup = "rollup"
	roleQuery  = "query"
)

// nodeConfig is everything a node needs, from flags (serve) or from the
// embedded services (dev).
type nodeConfig struct {
	Roles       map[string]bool
	Listen      string
	QueryListen string
	Brokers     []string
	// Kafka are the brokers' TLS and SASL settings; KafkaOpts the client
	// options built from them once, appended by every Kafka client.
	Kafka     kafkaconn.Options
	KafkaOpts []kgo.Opt
	Topic     string
	// TopicPartitions is the usage topic's partition count when a node
	// creates it.
	TopicPartitions int32
	// AlertsTopic is the Kafka topic of utilization alerts.
	AlertsTopic string
	// CH is the ClickHouse connection (Addr "" when the node needs none).
	CH chschema.ConnOptions
	// TLS is the certificate of the HTTP listeners (none: plain HTTP).
	TLS        listenTLS
	Database   string
	DataDir    string
	ConfigFile string
	Demo       bool // load the demo tenant when no config file is given
	Region     string
	Node       string
	SpoolMax   int64
	FullPolicy kafka.FullPolicy
	Raw        bool
	// RollupBatchWait is rollup.Options.MaxBatchWait.
	RollupBatchWait time.Duration
	ConfigLog       string // configLogFile or configLogKafka
	ConfigTopic     string
	QueryTimeout    time.Duration
	// Cluster: where the other API nodes reach this one, how long calls wait
	// for a partition handoff, and what to do when an owner is unreachable.
	Advertise      string
	HandoffTimeout time.Duration
	// PublicURL is where API gateways reach --listen (the backend of the
	// gateway configuration).
	PublicURL        string
	OwnerUnreachable cluster.Policy
	// Envoy is the Envoy rate limit service (off without --envoy-config).
	Envoy envoyConfig
	// Regions: the peer regions' Kafka clusters (PeerSpecs as given,
	// Peers parsed), how far back a starting node reads their usage and how
	// long it waits for that before it reports ready.
	PeerSpecs          []string
	Peers              []region.Peer
	PeerRestoreSpan    time.Duration
	PeerRestoreTimeout time.Duration
}

// Where the configuration change log lives.
const (
	configLogFile  = "file"
	configLogKafka = "kafka"
)

// openConfigLog opens the node's configuration change log.
func openConfigLog(ctx context.Context, cfg nodeConfig, log *slog.Logger) (configlog.Log, error) {
	switch cfg.ConfigLog {
	case configLogKafka:
		l, err := kafkalog.Open(ctx, kafkalog.Options{Brokers: cfg.Brokers, Topic: cfg.ConfigTopic, Logger: log, ClientOpts: cfg.KafkaOpts})
		if err != nil {
			return nil, fmt.Errorf("open config log: %w", err)
		}
		return l, nil
	default:
		l, err := configlog.OpenFile(filepath.Join(cfg.DataDir, "config"), log)
		if err != nil {
			return nil, fmt.Errorf("open config log: %w", err)
		}
		return l, nil
	}
}

// parseRoles turns "api,rollup" into a set, rejecting unknown names.
func parseRoles(s string) (map[string]bool, error) {
	roles := make(map[string]bool)
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		switch r {
		case roleAPI, roleRollup, roleQuery:
			roles[r] = true
		case "all":
			roles[roleAPI], roles[roleRollup], roles[roleQuery] = true, true, true
		case "":
		default:
			return nil, usageError{fmt.Sprintf("unknown role %q (want api, rollup, query or all)", r)}
		}
	}
	if len(roles) == 0 {
		return nil, usageError{"--roles names no role"}
	}
	return roles, nil
}

// runNode runs the configured roles until ctx is done, then drains: the HTTP
// listener stops accepting, in-flight requests finish, and the producer sends
// or spools every accepted event before returning.
func runNode(ctx context.Context, cfg nodeConfig, stdout io.Writer, log *slog.Logger) error {
	reg := metrics.NewRegistry()
	errc := make(chan error, 4)
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	// Configuration: the config log (a file in the data dir, or the Kafka
	// topic every node of a cluster shares), projected into the store.
	clog, err := openConfigLog(ctx, cfg, log)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { clog.Close() })
	proj := configlog.NewProjection(clog, &catalog.Store{}, catalog.NewKeyRegistry(), log)
	projCtx, stopProj := context.WithCancel(context.Background())
	cleanups = append(cleanups, stopProj)
	go func() {
		if err := proj.Run(projCtx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, configlog.ErrClosed) {
			errc <- fmt.Errorf("config projection: %w", err)
		}
	}()
	if err := proj.Sync(ctx); err != nil {
		return fmt.Errorf("load config log: %w", err)
	}
	if err := applyStartupConfig(ctx, cfg, proj, stdout); err != nil {
		return err
	}

	if cfg.Roles[roleRollup] {
		r, err := rollup.New(rollup.Options{
			Brokers:            cfg.Brokers,
			Topic:              cfg.Topic,
			KafkaOpts:          cfg.KafkaOpts,
			ClickHouseAddr:     cfg.CH.Addr,
			ClickHouseUser:     cfg.CH.User,
			ClickHousePassword: cfg.CH.Password,
			ClickHouseTLS:      cfg.CH.TLS,
			Database:           cfg.Database,
			SkipMigrate:        true, // dev and serve migrate before any role starts
			Hierarchy:          proj.Store(),
			Raw:                cfg.Raw,
			MaxBatchWait:       cfg.RollupBatchWait,
			InstanceID:         cfg.Node,
			Logger:             log.With("role", roleRollup),
		})
		if err != nil {
			return fmt.Errorf("rollup: %w", err)
		}
		r.RegisterMetrics(reg)
		stop, err := startAlertsSink(ctx, cfg, proj.Store(), reg, errc, log.With("role", roleRollup))
		if err != nil {
			return err
		}
		cleanups = append(cleanups, stop)
		rctx, stopRollup := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := r.Run(rctx); err != nil {
				errc <- fmt.Errorf("rollup: %w", err)
			}
		}()
		cleanups = append(cleanups, func() { stopRollup(); <-done })
		log.Info("rollup role running", "brokers", strings.Join(cfg.Brokers, ","), "clickhouse", cfg.CH.Addr)
	}

	if !cfg.Roles[roleAPI] && cfg.Roles[roleRollup] {
		// The API role serves /metrics; a rollup-only node needs its own.
		stop, err := startOpsListener(cfg.Listen, cfg.TLS, reg, errc, log)
		if err != nil {
			return err
		}
		cleanups = append(cleanups, stop)
	}

	var settled <-chan struct{} // startup work of other roles the API role waits for
	if cfg.Roles[roleQuery] {
		stop, feedCaughtUp, err := startQueryRole(ctx, cfg, proj.Store(), clog, errc, log.With("role", roleQuery))
		if err != nil {
			return err
		}
		cleanups = append(cleanups, stop)
		settled = feedCaughtUp
	}

	if cfg.Roles[roleAPI] {
		if err := runAPI(ctx, cfg, proj, reg, settled, errc, &cleanups, log); err != nil {
			return err
		}
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down: draining")
		return nil
	case err := <-errc:
		return err
	}
}

// settleTimeout bounds how long the API role waits for the other roles'
// startup work (see runAPI) before it reports ready.
const settleTimeout = time.Minute

// runAPI starts the API role: the usage producer, the limiter, the
// Service Management and admin APIs on --listen, the counter restore and
// the node's membership in its region's cluster. It returns once the node is
// ready; cleanups receives what stops it, in start order.
func runAPI(ctx context.Context, cfg nodeConfig, proj *configlog.Projection, reg *metrics.Registry, settled <-chan struct{}, errc chan<- error, cleanups *[]func(), log *slog.Logger) error {
	partitions, err := ensureUsageTopic(ctx, cfg, log)
	if err != nil {
		return err
	}
	producer, err := kafka.New(kafka.Options{
		Brokers:       cfg.Brokers,
		Topic:         cfg.Topic,
		Partitions:    int32(partitions),
		SpoolDir:      filepath.Join(cfg.DataDir, "spool"),
		SpoolMaxBytes: cfg.SpoolMax,
		FullPolicy:    cfg.FullPolicy,
		ClientOpts:    cfg.KafkaOpts,
		Logger:        log.With("role", "producer"),
	})
	if err != nil {
		return fmt.Errorf("usage producer: %w", err)
	}
	*cleanups = append(*cleanups, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := producer.Close(cctx); err != nil {
			log.Error("usage producer: close", "err", err)
		}
	})
	producer.RegisterMetrics(reg)

	clock := limiter.NewCoarseClock(time.Millisecond)
	*cleanups = append(*cleanups, clock.Stop)
	lim := limiter.New(limiter.Options{Clock: clock.Now, HugePages: true})
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	*cleanups = append(*cleanups, stopSweep)
	go sweep(sweepCtx, lim)

	fwdTLS, err := cfg.TLS.forwardTLS()
	if err != nil {
		return err
	}
	node, err := cluster.New(cluster.Options{
		Brokers:          cfg.Brokers,
		KafkaOpts:        cfg.KafkaOpts,
		ForwardTLS:       fwdTLS,
		Topic:            cfg.Topic,
		Region:           cfg.Region,
		Advertise:        cfg.Advertise,
		Partitions:       partitions,
		Flush:            producer.FlushPartitions,
		HandoffTimeout:   cfg.HandoffTimeout,
		OwnerUnreachable: cfg.OwnerUnreachable,
		Metrics:          reg,
		Logger:           log.With("role", "cluster"),
	})
	if err != nil {
		return err
	}
	if _, err := ensureTopic(ctx, cfg, cfg.AlertsTopic, "alerts topic", log); err != nil {
		return err
	}
	detector, err := alerts.NewDetector(alerts.DetectorOptions{
		Brokers:   cfg.Brokers,
		Topic:     cfg.AlertsTopic,
		KafkaOpts: cfg.KafkaOpts,
		Node:      cfg.Node,
		Clock:     clock.Now,
		Logger:    log.With("role", "alerts"),
	})
	if err != nil {
		return err
	}
	*cleanups = append(*cleanups, detector.Close) // after the listener and the projection stop
	detector.RegisterMetrics(reg)
	ids := event.NewIDGenerator()
	var ready atomic.Bool
	var caps smapi.Caps
	var shares *region.Shares
	var peerTails atomic.Pointer[region.Tails] // set once the peers are tailed
	if len(cfg.Peers) > 0 {
		shares = region.NewShares(cfg.Region, cfg.Peers)
		caps = shares
	}
	api := smapi.New(smapi.Options{
		Caps:    caps,
		Ready:   ready.Load,
		Catalog: proj.Store(),
		Limiter: lim,
		Sink:    producer,
		Clock:   clock.Now,
		Region:  cfg.Region,
		Node:    cfg.Node,
		Version: version,
		Metrics: reg,
		Router:  node,
		IDs:     ids,
		Status: func(dst []byte) []byte {
			dst = node.AppendStatus(dst)
			if ts := peerTails.Load(); ts != nil {
				dst = append(dst, `,"regions":{"region":"`...)
				dst = append(dst, cfg.Region...)
				dst = append(dst, `",`...)
				dst = append(ts.AppendStatus(dst), '}')
			}
			return dst
		},
		Watcher: detector,
	})
	adm := admin.New(proj, log.With("role", "admin"), 0)
	gw, err := gateway.New(gateway.Options{Projection: proj, PublicURL: cfg.PublicURL, Logger: log.With("role", "gateway-config")})
	if err != nil {
		return err
	}
	envoy, err := startEnvoy(cfg, lim, producer, clock.Now, ids, reg, proj, errc, cleanups, log)
	if err != nil {
		return err
	}
	srv := smapi.NewServer(route(api, adm, gw, envoy), smapi.ServerOptions{Logger: log, OnFailure: routeFailure})
	ln, err := cfg.TLS.listen(cfg.Listen)
	if err != nil {
		return err
	}
	go func() {
		if err := srv.Serve(ln); err != nil {
			errc <- fmt.Errorf("serve %s: %w", cfg.Listen, err)
		}
	}()
	var pr *cluster.Projection
	*cleanups = append(*cleanups, func() {
		// Drain: hand the partitions over first (their calls are forwarded
		// to the new owners meanwhile), then stop the listener, then the
		// projection; the producer closes after this.
		node.Close()
		if err := srv.ShutdownWithContext(context.Background()); err != nil {
			log.Error("http shutdown", "err", err)
		}
		if pr != nil {
			pr.Close()
		}
	})
	log.Info("api role listening; /status answers starting until counters are restored", "addr", ln.Addr().String(), "scheme", cfg.TLS.scheme(),
		"endpoints", "/transactions/*.xml /transactions.xml /status /check.txt /available /metrics /health "+admin.Prefix+" "+admin.OpenAPIPath+" /admin/api/*.json (gateway configuration)",
		"public_url", cfg.PublicURL)
	ends, err := restoreCounters(ctx, cfg, lim, proj.Store(), detector, clock.Now(), log)
	if err != nil {
		return err
	}
	pr, err = cluster.NewProjection(cluster.ProjectionOptions{
		Brokers:   cfg.Brokers,
		KafkaOpts: cfg.KafkaOpts,
		Topic:     cfg.Topic,
		From:      ends,
		Limiter:   lim,
		Catalog:   proj.Store(),
		Own:       ids.Prefix(),
		Other:     envoyOther(envoy),
		Watcher:   detector,
		Logger:    log.With("role", "projection"),
	})
	if err != nil {
		return err
	}
	if err := node.Start(pr); err != nil {
		return err
	}
	if len(cfg.Peers) > 0 {
		owns := func(app *catalog.App) bool {
			p := kafka.Partition(event.Key(nil, app.Service.ID, app.ID), partitions)
			return slices.Contains(node.Owned(), p)
		}
		tails, err := tailPeers(ctx, cfg, lim, shares, owns, proj.Store(), reg, cleanups, log)
		if err != nil {
			return err
		}
		peerTails.Store(tails)
	}
	select {
	case <-node.Joined():
	case <-ctx.Done():
		return nil
	}
	// Collect the startup's garbage (the parsed configuration, the
	// restore's reads, the query role's first read of the configuration
	// log) before the first call, and give its pages back. Left to the
	// collector's pace, its first cycle would mark the whole catalog (a
	// second of a core at a million applications) while the node serves,
	// and the first calls and admin changes would pay for it.
	if settled != nil {
		select {
		case <-settled:
		case <-time.After(settleTimeout):
			// A log whose last record the feed never hands over (one it
			// cannot decode) must not keep the node from serving.
			log.Warn("api role: the query role's first read of the configuration log is not done; reporting ready anyway", "waited", settleTimeout)
		case <-ctx.Done():
			return nil
		}
	}
	debug.FreeOSMemory()
	ready.Store(true)
	log.Info("api role ready", "region", cfg.Region, "advertise", cfg.Advertise, "owned partitions", len(node.Owned()))
	return nil
}

// tailPeers starts counting the peer regions' usage toward global limits
// and waits, up to --peer-restore-timeout, until it has read their logs up
// to where they end now.
//
// It also starts moving the strict limits' shares between the regions,
// once this region's own grants, made before a restart, are read.
func tailPeers(ctx context.Context, cfg nodeConfig, lim *limiter.Limiter, shares *region.Shares, owns func(*catalog.App) bool, store *catalog.Store, reg *metrics.Registry, cleanups *[]func(), log *slog.Logger) (*region.Tails, error) {
	now := time.Now()
	from := region.ReplayFrom(store.Load(), now, cfg.PeerRestoreSpan)
	if err := ensureSharesTopic(ctx, cfg); err != nil {
		return nil, err
	}
	rb, err := shares.StartRebalance(region.RebalanceOptions{
		Region:    cfg.Region,
		Peers:     cfg.Peers,
		Brokers:   cfg.Brokers,
		Topic:     region.SharesTopic(cfg.Topic),
		From:      from,
		Limiter:   lim,
		Catalog:   store,
		Owns:      owns,
		Metrics:   reg,
		Logger:    log.With("role", "region"),
		KafkaOpts: cfg.KafkaOpts,
	})
	if err != nil {
		return nil, err
	}
	*cleanups = append(*cleanups, rb.Close)
	// Until this region's earlier grants are read, its shares would look
	// larger than they are: no decision before that.
	if !rb.WaitCaughtUp(ctx) {
		return nil, ctx.Err()
	}
	tails, err := region.Start(region.Options{
		Region:    cfg.Region,
		Peers:     cfg.Peers,
		Topic:     cfg.Topic,
		From:      from,
		Limiter:   lim,
		Shares:    shares,
		Catalog:   store,
		Metrics:   reg,
		Logger:    log.With("role", "region"),
		KafkaOpts: cfg.KafkaOpts,
	})
	if err != nil {
		return nil, err
	}
	*cleanups = append(*cleanups, tails.Close)
	wctx, cancel := context.WithTimeout(ctx, cfg.PeerRestoreTimeout)
	defer cancel()
	if behind := tails.WaitCaughtUp(wctx); len(behind) > 0 {
		log.Warn("peer regions not read to their end yet: global limits count their usage as it arrives", "peers", strings.Join(behind, ","), "waited", time.Since(now))
	} else {
		log.Info("peer regions read to their end", "peers", len(cfg.Peers), "took", time.Since(now))
	}
	return tails, nil
}

// ensureSharesTopic creates the region's shares topic (strict limits'
// grants between regions) when it does not exist yet.
func ensureSharesTopic(ctx context.Context, cfg nodeConfig) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KafkaOpts...)...)
	if err != nil {
		return fmt.Errorf("shares topic: kafka client: %w", err)
	}
	defer cl.Close()
	if _, _, err := kafkatopic.Ensure(ctx, kadm.NewClient(cl), region.SharesTopic(cfg.Topic), 1, -1, nil); err != nil {
		return fmt.Errorf("shares topic: %w", err)
	}
	return nil
}

// serveHealth answers a liveness probe: the process is up.
func serveHealth(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"status":"ok"}`)
}

// startOpsListener serves /metrics and /health on addr until the returned
// stop function is called.
func startOpsListener(addr string, lt listenTLS, reg *metrics.Registry, errc chan<- error, log *slog.Logger) (stop func(), err error) {
	ln, err := lt.listen(addr)
	if err != nil {
		return nil, err
	}
	srv := httpserver.New(&fasthttp.Server{
		Name:        "sluice",
		ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute,
		Handler: func(ctx *fasthttp.RequestCtx) {
			switch string(ctx.Path()) {
			case "/metrics":
				ctx.SetContentType(metrics.ContentType)
				if err := reg.WritePrometheus(ctx); err != nil {
					ctx.Error("metrics: "+err.Error(), fasthttp.StatusInternalServerError)
				}
			case "/health":
				serveHealth(ctx)
			default:
				ctx.Error("not found: /metrics and /health are served here", fasthttp.StatusNotFound)
			}
		},
	}, httpserver.Options{Logger: log})
	go func() {
		if err := srv.Serve(ln); err != nil {
			errc <- fmt.Errorf("serve %s: %w", addr, err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String(), "scheme", lt.scheme(), "endpoints", "/metrics /health")
	return func() {
		if err := srv.ShutdownWithContext(context.Background()); err != nil {
			log.Error("metrics listener shutdown", "err", err)
		}
	}, nil
}

// ensureUsageTopic creates the usage topic when it does not exist yet, with
// --topic-partitions partitions and the broker's default replication factor,
// and returns its partition count. Without it a fresh cluster has no usage
// topic, or one a broker auto-created with its default of one partition,
// which no consumer group can share.
func ensureUsageTopic(ctx context.Context, cfg nodeConfig, log *slog.Logger) (int, error) {
	return ensureTopic(ctx, cfg, cfg.Topic, "usage topic", log)
}

// ensureTopic creates topic (what names it in logs and errors) when it does
// not exist yet, with --topic-partitions partitions and the broker's default
// replication factor, and returns its partition count.
func ensureTopic(ctx context.Context, cfg nodeConfig, topic, what string, log *slog.Logger) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KafkaOpts...)...)
	if err != nil {
		return 0, fmt.Errorf("%s: kafka client: %w", what, err)
	}
	defer cl.Close()
	n, created, err := kafkatopic.Ensure(ctx, kadm.NewClient(cl), topic, cfg.TopicPartitions, -1, nil)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if created {
		log.Info(what+" created", "topic", topic, "partitions", n)
	} else if n != int(cfg.TopicPartitions) {
		log.Info(what+" exists; --topic-partitions applies only when creating it", "topic", topic, "partitions", n)
	}
	return n, nil
}

// startAlertsSink starts the rollup role's alerts stage: it stores the
// alerts of the alerts topic in ClickHouse and delivers them to the
// tenants' webhooks.
func startAlertsSink(ctx context.Context, cfg nodeConfig, store *catalog.Store, reg *metrics.Registry, errc chan<- error, log *slog.Logger) (stop func(), err error) {
	if _, err := ensureTopic(ctx, cfg, cfg.AlertsTopic, "alerts topic", log); err != nil {
		return nil, err
	}
	conn, err := chschema.Open(cfg.CH)
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	sink, err := alerts.NewSink(alerts.SinkOptions{
		Brokers:   cfg.Brokers,
		Topic:     cfg.AlertsTopic,
		KafkaOpts: cfg.KafkaOpts,
		Conn:      conn,
		Database:  cfg.Database,
		Catalog:   store,
		Logger:    log,
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	sink.RegisterMetrics(reg)
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := sink.Run(sctx); err != nil {
			errc <- fmt.Errorf("alerts: %w", err)
		}
	}()
	return func() { cancel(); <-done; conn.Close() }, nil
}

// restoreCounters rebuilds the limiter from ClickHouse's open-window sums and
// the Kafka tail after them (invariant 3), before the API answers. It
// returns the end offsets the counters hold every record below, where the
// cluster projection takes over.
func restoreCounters(ctx context.Context, cfg nodeConfig, lim *limiter.Limiter, store *catalog.Store, watcher restore.Watcher, now time.Time, log *slog.Logger) (map[int32]int64, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if cfg.CH.Addr == "" {
		log.Warn("no --clickhouse: limiter counters start empty (not restored)")
		return endOffsets(rctx, cfg)
	}
	conn, err := chschema.Connect(rctx, cfg.CH)
	if err != nil {
		return nil, fmt.Errorf("restore counters: %w", err)
	}
	defer conn.Close()
	st, err := restore.Restore(rctx, restore.Options{
		Limiter:   lim,
		Catalog:   store,
		CH:        conn,
		Database:  cfg.Database,
		Brokers:   cfg.Brokers,
		KafkaOpts: cfg.KafkaOpts,
		Topic:     cfg.Topic,
		Now:       now,
		Watcher:   watcher,
		Logger:    log.With("role", "restore"),
	})
	if err != nil {
		return nil, fmt.Errorf("restore counters: %w", err)
	}
	log.Info("limiter counters restored", "seeded", st.Seeded, "replayed", st.Replayed, "skipped", st.Skipped, "records", st.Records, "took", st.Duration)
	return st.Ends, nil
}

// endOffsets lists the usage topic's end offsets.
func endOffsets(ctx context.Context, cfg nodeConfig) (map[int32]int64, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("usage topic: kafka client: %w", err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, cfg.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", cfg.Topic, err)
	}
	m := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) { m[o.Partition] = o.Offset })
	return m, nil
}

// adminMaxURL bounds the request URI of the admin API and the gateway
// configuration endpoints on the listener they share with the Service
// Management API (docs/admin-api.md).
const adminMaxURL = 8 << 10

// route sends the gateway configuration endpoints (3scale's admin API
// paths under /admin/api/) to gw, /admin and everything else under it to
// the admin API, /health to a liveness answer, /openapi.json to the admin
// API's OpenAPI document and, with an Envoy rate limit service, /json to
// it; everything else is the Service Management API (which also serves
// /metrics).
func route(api *smapi.Server, adm *admin.API, gw *gateway.API, envoy *envoyrls.Service) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		path := ctx.Path()
		switch {
		case (gateway.Owns(path) || admin.Owns(path)) && len(ctx.Request.Header.RequestURI()) > adminMaxURL:
			// The listener reads request lines up to the Service
			// Management API's limit; the admin APIs keep their own.
			routeFailure(ctx, httpserver.Failure{Status: fasthttp.StatusRequestURITooLong, Reason: "request URI longer than 8192 bytes", Path: path})
		case gateway.Owns(path):
			gw.Handler(ctx)
		case admin.Owns(path):
			adm.Handler(ctx)
		case envoy != nil && string(path) == envoyrls.JSONPath:
			envoy.ServeJSON(ctx)
		case string(path) == "/health":
			serveHealth(ctx)
		case string(path) == admin.OpenAPIPath:
			admin.ServeOpenAPI(ctx)
		default:
			api.Handler(ctx)
		}
	}
}

// routeFailure answers a request the API listener could not read as route
// would have sent it: in the admin API's JSON under /admin, in the Service
// Management API's XML elsewhere.
func routeFailure(ctx *fasthttp.RequestCtx, f httpserver.Failure) {
	if gateway.Owns(f.Path) {
		gateway.WriteFailure(ctx, f)
		return
	}
	if admin.Owns(f.Path) {
		admin.WriteFailure(ctx, f)
		return
	}
	smapi.WriteFailure(ctx, f)
}

// applyStartupConfig writes the config file's tenants (or the demo tenant)
// into the config log as events, so every node converges on them.
func applyStartupConfig(ctx context.Context, cfg nodeConfig, proj *configlog.Projection, stdout io.Writer) error {
	if cfg.ConfigFile != "" {
		doc, err := catalog.Load(cfg.ConfigFile)
		if err != nil {
			return fmt.Errorf("config %s: %w", cfg.ConfigFile, err)
		}
		if err := proj.Apply(ctx, doc); err != nil {
			return fmt.Errorf("apply config %s: %w", cfg.ConfigFile, err)
		}
		// A large file's document and records are garbage now: hand their
		// memory back to the system rather than keep it for the next
		// collection's growth.
		doc = nil
		debug.FreeOSMemory()
		return nil
	}
	if !cfg.Demo {
		return nil
	}
	creds, _ := catalog.DemoCredentialsOf(proj.Document())
	demo, creds := catalog.DemoDocument(creds)
	if err := proj.Apply(ctx, demo); err != nil {
		return fmt.Errorf("apply demo tenant: %w", err)
	}
	printDemo(stdout, cfg.TLS.scheme(), cfg.Listen, creds)
	return nil
}

// sweep drops idle applications' counters so memory follows active apps.
func sweep(ctx context.Context, lim *limiter.Limiter) { every(ctx, 10*time.Second, lim.Sweep) }

// every calls fn every d until ctx is done.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
