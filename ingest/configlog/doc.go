// Package configlog is the configuration change log: every change to
// tenants, services, plans and applications is a Record (a key naming one
// entity, and the entity's JSON, or nothing to delete it) appended to a Log,
// and every node builds its configuration by applying the log in order.
//
// The model is the one of a compacted Kafka topic (`sluice.config`): the
// latest record of each key is the entity's state, so the log can forget
// older records of a key without changing what it means. A Projection reads
// the log into a State, assembles the State into a catalog.Document, and
// publishes the Document's catalog.Snapshot into a catalog.Store, where the
// hot path finds it.
//
// Gateway configurations are versioned per environment (staging,
// production): each version is a proxyconfig record of its own key,
// written once, so compaction keeps every version and the log is their
// history. Update adds a staging version when a service's gateway block
// changes (Apply, for a file, a production version too); Promote copies a
// staging version to production; GatewayVersion and GatewayVersions read
// them. Versions are not part of the Document: Diff keeps them while their
// service exists and deletes them with it.
//
// Writers (the admin API, and start-up with a configuration file) never edit
// the Snapshot: they compute the Document they want, and Projection.Update
// validates it, appends the records that differ (Diff; Reconcile for a file
// that declares some tenants), and waits until the projection has applied
// them. Writers on different nodes are not serialized: when two changes,
// each valid, are invalid together, the writer that finds its own records
// at fault appends their previous values and returns ErrConflict, so the
// log's configuration is invalid only for that moment. FileLog is the
// single-process Log, an append-only file made durable
// with fsync on every append; the pipeline plugs Kafka in behind the same
// Log interface.
//
// Typical wiring:
//
//	log, err := configlog.OpenFile(dataDir, logger)
//	store := &catalog.Store{}
//	proj := configlog.NewProjection(log, store, catalog.NewKeyRegistry(), logger)
//	go proj.Run(ctx)
//	err = proj.Sync(ctx)                   // caught up: ready
//	doc, err := catalog.Load(file)         // optional --config
//	err = proj.Apply(ctx, doc)             // as events
//	snap := store.Load()                   // on every request
package configlog
