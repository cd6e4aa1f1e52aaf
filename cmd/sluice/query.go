package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/configlog"
	"github.com/sluice-dev/sluice/query"
)

// registerQueryFlags adds the query role's flags to fs (serve and dev).
func registerQueryFlags(fs *flag.FlagSet, cfg *nodeConfig) {
	fs.DurationVar(&cfg.QueryTimeout, "query-timeout", query.DefaultQueryTimeout,
		"deadline of each query API query, also enforced on ClickHouse (max_execution_time); past it the query is killed and the call answers 503 query_timeout")
}

// startQueryRole serves the query API on cfg.QueryListen until the returned
// stop function is called. A ClickHouse that is down at startup is not fatal:
// the API answers 503 until it is back. clog feeds /api/v1/changes; settled
// is closed once that feed has read clog up to where it ended at start (or
// has stopped).
func startQueryRole(ctx context.Context, cfg nodeConfig, store *catalog.Store, clog configlog.Log, errc chan<- error, log *slog.Logger) (stop func(), settled <-chan struct{}, err error) {
	if cfg.CH.Addr == "" {
		return nil, nil, fmt.Errorf("query role: no ClickHouse address (--clickhouse)")
	}
	if cfg.QueryTimeout < time.Second {
		return nil, nil, usageError{fmt.Sprintf("--query-timeout must be at least 1s, not %v", cfg.QueryTimeout)}
	}
	ch := cfg.CH
	ch.MaxOpenConns, ch.MaxIdleConns = 32, 8
	conn, err := chschema.Open(ch)
	if err != nil {
		return nil, nil, fmt.Errorf("query role: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := conn.Ping(pctx); err != nil {
		log.Warn("query role: ClickHouse does not answer yet; the query API answers 503 until it does", "clickhouse", cfg.CH.Addr, "err", err)
	}
	cancel()
	feed := query.NewChangeFeed()
	srv, err := query.New(query.Options{
		Catalog:      store,
		Changes:      feed,
		Conn:         conn,
		Database:     cfg.Database,
		QueryTimeout: cfg.QueryTimeout,
		Logger:       log,
	})
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	ln, err := cfg.TLS.listen(cfg.QueryListen)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	sctx, stopServe := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		if err := srv.Serve(sctx, ln); err != nil {
			errc <- fmt.Errorf("query API %s: %w", cfg.QueryListen, err)
		}
	}()
	feedDone := make(chan struct{})
	go func() {
		defer func() { done <- struct{}{} }()
		defer close(feedDone)
		if err := feed.Run(sctx, clog); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, configlog.ErrClosed) {
			log.Error("query role: change feed stopped; /api/v1/changes shows no newer changes", "err", err)
		}
	}()
	// The feed reads the whole configuration log once (a million
	// applications are a million records); the API role waits for it
	// before it collects the startup's garbage and reports ready.
	caughtUp := make(chan struct{})
	go func() {
		defer close(caughtUp)
		select {
		case <-feed.CaughtUp():
		case <-feedDone:
		}
	}()
	log.Info("query role listening", "addr", ln.Addr().String(), "scheme", cfg.TLS.scheme(), "clickhouse", cfg.CH.Addr, "database", cfg.Database,
		"query_timeout", cfg.QueryTimeout, "endpoints", "/api/v1/usage /api/v1/top /api/v1/denials /api/v1/utilization /api/v1/changes /api/v1/services /api/v1/applications /api/v1/export /api/v1/alerts /stats/services/{id}/usage.json /stats/applications/{id}/usage.json /health /openapi.json")
	return func() {
		stopServe()
		<-done
		<-done
		conn.Close()
	}, caughtUp, nil
}
