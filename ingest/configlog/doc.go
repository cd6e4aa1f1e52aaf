// Package configlog is the configuration change log: every change to
// tenants, services, plans and applications is a Record (a key naming one
// entity, and the entity's JSON, or nothing to delete it) appended to a Log,
// and every node builds its configuration by applying the log in order.
//
// The model is the one of a compacted Kafka topic (`sluice.config`): the
// latest record of each key is the entity's state, so the log can forget
// older records of a key without changing what it means. A Projection reads
// the log into a State and keeps the catalog.Snapshot in a catalog.Store,
// where the hot path finds it, equal to the one a full build of the State
// gives (catalog.Build of State.Document): plan and application records are
// applied to the published catalog one by one (catalog.Stage), at the cost
// of the record; the first batch, tenant and service records, and a State
// that is invalid rebuild it whole. A property test holds the two ways to
// the same result over random sequences of changes.
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
// them. UpdateIn does the same for a change to plans or one application
// within a Scope (every tenant, service and plan, and the named
// applications), checking what the scope does not hold against the
// catalog, so that one change costs one change at a million applications;
// Apply writes a configuration file in chunks (ChunkBytes). Writers on different nodes are not serialized: when two changes,
// each valid, are invalid together, the writer that finds its own records
// at fault appends their previous values and returns ErrConflict, so the
// log's configuration is invalid only for that moment. FileLog is the
// single-process Log, an append-only file made durable
// with fsync on every append and compacted when it is opened if most of it
// is records that later ones replaced; the pipeline plugs Kafka in behind
// the same Log interface (kafkalog, a compacted topic).
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
