package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"time"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/configlog"
	"github.com/sluice-dev/sluice/ingest/envoyrls"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/internal/tlsconf"
	"github.com/sluice-dev/sluice/limiter"
)

// envoyConfig is the API role's Envoy rate limit service settings.
type envoyConfig struct {
	Dir       string // --envoy-config: off when empty
	Listen    string
	Tenant    string
	MaxValues int
	Headers   bool
}

func (e *envoyConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&e.Dir, "envoy-config", "", "directory of Envoy ratelimit configuration files (every *.yaml, reloaded when they change): serves Envoy's rate limit service on --grpc-listen and POST /json on --listen")
	fs.StringVar(&e.Listen, "grpc-listen", "127.0.0.1:8081", "address of the gRPC envoy.service.ratelimit.v3.RateLimitService (with --envoy-config)")
	fs.StringVar(&e.Tenant, "envoy-tenant", "envoy", "tenant whose services the Envoy domains are (declare it in the configuration to read their usage in the query API)")
	fs.IntVar(&e.MaxValues, "envoy-max-values", envoyrls.DefaultMaxValues, "active descriptor values per Envoy domain; past it new values share one counter set per limit")
	fs.BoolVar(&e.Headers, "envoy-headers", false, "add x-ratelimit-limit, x-ratelimit-remaining and x-ratelimit-reset to Envoy rate limit responses")
}

func (e envoyConfig) check() error {
	if e.Dir == "" {
		return nil
	}
	if e.Listen == "" {
		return usageError{"--envoy-config needs --grpc-listen"}
	}
	if e.MaxValues <= 0 {
		return usageError{"--envoy-max-values must be positive"}
	}
	return nil
}

// startEnvoy loads --envoy-config (a startup error if it does not load),
// starts the gRPC listener, the reload watcher and the value sweeper, and
// declares the domains in the catalog. It returns nil without
// --envoy-config.
func startEnvoy(cfg nodeConfig, lim *limiter.Limiter, sink envoyrls.EventSink, clock func() time.Time, ids *event.IDGenerator,
	reg *metrics.Registry, proj *configlog.Projection, errc chan<- error, cleanups *[]func(), log *slog.Logger) (*envoyrls.Service, error) {
	ec := cfg.Envoy
	if ec.Dir == "" {
		return nil, nil
	}
	log = log.With("role", "envoy")
	ctx, cancel := context.WithCancel(context.Background())
	*cleanups = append(*cleanups, cancel)
	syncCatalog := func(c *envoyrls.Config) {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		var skipped []string
		err := proj.Update(cctx, func(doc *catalog.Document) error {
			_, skipped = envoyrls.AddToCatalog(doc, ec.Tenant, c)
			return nil
		})
		for _, s := range skipped {
			log.Warn("envoy domain not in the query API", "reason", s)
		}
		if err != nil {
			log.Error("envoy domains: catalog update failed", "err", err)
		}
	}
	svc := envoyrls.New(envoyrls.Options{
		Limiter: lim, Sink: sink, Tenant: ec.Tenant, Clock: clock, Region: cfg.Region, Node: cfg.Node,
		IDs: ids, Metrics: reg, MaxValues: ec.MaxValues, Headers: ec.Headers, Logger: log, OnLoad: syncCatalog,
	})
	if err := svc.Reload(ec.Dir); err != nil {
		return nil, fmt.Errorf("--envoy-config: %w", err)
	}
	if err := restoreEnvoy(cfg, svc, clock(), log); err != nil {
		return nil, err
	}
	var opts []grpc.ServerOption
	if cfg.TLS.on() {
		tc, err := tlsconf.Server(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--grpc-listen: --tls-cert: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	ln, err := net.Listen("tcp", ec.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", ec.Listen, err)
	}
	ln = netutil.LimitListener(ln, envoyrls.MaxConns)
	g := envoyrls.NewGRPCServer(svc, opts...)
	go func() {
		if err := g.Serve(ln); err != nil {
			errc <- fmt.Errorf("serve %s: %w", ec.Listen, err)
		}
	}()
	*cleanups = append(*cleanups, func() { g.Drain(10 * time.Second) })
	go svc.Watch(ctx, ec.Dir, time.Second)
	go every(ctx, 5*time.Second, svc.Sweep)
	log.Info("envoy rate limit service listening", "addr", ln.Addr().String(), "tls", cfg.TLS.on(), "config", ec.Dir, "tenant", ec.Tenant,
		"endpoints", "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit, grpc.health.v1.Health, POST "+envoyrls.JSONPath+" on --listen")
	return svc, nil
}

// restoreEnvoy seeds the Envoy domains' counters from the rollups' sums of
// the open calendar windows, before the gRPC listener opens. Without
// --clickhouse they start empty.
func restoreEnvoy(cfg nodeConfig, svc *envoyrls.Service, now time.Time, log *slog.Logger) error {
	if cfg.CH.Addr == "" {
		log.Warn("no --clickhouse: envoy counters start empty (not restored)")
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conn, err := chschema.Connect(ctx, cfg.CH)
	if err != nil {
		return fmt.Errorf("restore envoy counters: %w", err)
	}
	defer conn.Close()
	start := time.Now()
	win, err := chschema.OpenWindowSums(ctx, conn, cfg.Database, now)
	if err != nil {
		return fmt.Errorf("restore envoy counters: %w", err)
	}
	seeded, skipped := svc.Restore(win.Sums, now)
	log.Info("envoy counters restored", "seeded", seeded, "skipped", skipped, "took", time.Since(start))
	return nil
}

// envoyOther hands the cluster projection's events of Envoy domains to the
// Envoy rate limit service (nil without one).
func envoyOther(svc *envoyrls.Service) func(*event.Event) bool {
	if svc == nil {
		return nil
	}
	return svc.ApplyRemote
}
