// Package catalog owns tenants, services, metrics, plans, applications and
// keys: the configuration document, its loader and validator, and the
// in-memory Snapshot the hot path reads.
//
// Two forms of the same configuration:
//
//   - Document (with TenantSpec, ServiceSpec, MetricSpec, PlanSpec, LimitSpec,
//     AppSpec) is the declarative form: the YAML or JSON file of
//     docs/configuration.md, what the admin API reads and writes, and what
//     the config log (package configlog) carries, one entity per record. Load
//     and Parse read it (every problem reported with its path, unknown fields
//     included), Validate checks it, WriteYAML/WriteJSON export it, and an
//     export loads back as an equal Document.
//   - Snapshot (model.go) is the runtime form: fully indexed (by service
//     id, service token, provider key, user_key, metric name), limits
//     compiled to limiter.Limit. Build turns a valid Document into a
//     Snapshot; Store publishes it through an atomic pointer. Its tenants,
//     services and credentials never change once published: a change to
//     them is a new Snapshot swapped in. A service's plans and
//     applications (Service.Plan, App, AppByUserKey) are published per
//     service instead, by a Stage: it copies only the shards of the
//     service's indexes (AppIndex, 256 shards) that a change touches and
//     stores the service's new tables with one atomic store. The
//     applications on a plan share one reference to it (App.Plan), whose
//     contents a plan change swaps with one atomic store. So a change to
//     one application costs one application and a change to a plan one
//     plan, whatever the size of the configuration or the number of
//     applications on the plan. Readers never lock and never see a
//     half-made application or plan; a caller that reads a plan more than
//     once in one decision keeps the *Plan App.Plan returned.
//
// Memory (bench/RESULTS.md): about 230 bytes per application in the
// catalog (the App, its id and user_key, two index entries) and 28 in the
// KeyRegistry; the configuration log's state (package configlog) holds each
// application's record besides.
//
// The Spec types and their tags are the one description of the schema
// (schema.go): the decoder maps keys to fields by it, Clone copies every
// slice it reaches, and the validator takes the field names of its paths and
// messages from it (FieldName). A field added to a Spec type is decoded,
// cloned and encoded with no other change; its json and yaml tags must agree
// (checked when the package initialises).
//
// Application keys and metric ids for the limiter (limiter.AppKey,
// limiter.MetricID) come from a KeyRegistry the process keeps for its
// lifetime, so an application and a metric keep their identity, and their
// counters, across every rebuild: a metric's id belongs to its name, never
// to its position in the service's list, so adding, deleting or reordering
// metrics moves no usage. A Service lists its metrics in declared order;
// tables by id (Parents, MetricIndex's values, MetricName) may have holes.
// A service gets at most MaxMetricIDs distinct metric names in a process's
// life (Build and KeyRegistry.Reserve refuse more with a ValidationError).
// Nothing persisted holds these ids: events, rollups and the configuration
// log name applications and metrics by id and name.
//
// Validation rules (see Validate; bounds are the Max* constants):
//
//   - tenant ids match [a-z0-9_-]{1,64}; service, plan ids are 1-64 and
//     application ids 1-255 bytes of printable ASCII without spaces; metric
//     names 1-255 of [A-Za-z0-9_.:-];
//   - service ids are unique across all tenants; plan, application ids,
//     metric names and user_keys unique within their service;
//   - every secret (admin token, query token, service token, provider key)
//     is non-empty printable ASCII of at most 256 bytes and belongs to one
//     tenant and one kind; a service token or provider key may be shared by
//     several services of the same tenant (one grant or provider account);
//   - metric parents exist, with no cycles and at most 8 levels; limits
//     name existing metrics and valid periods (limiter.ParsePeriod), max >= 0,
//     at most one limit per (metric, period) in a plan; applications name
//     existing plans;
//   - auth_mode is user_key (default), app_id or oauth; state is active
//     (default) or suspended; at most one default service per tenant;
//   - user_key is required in user_key mode and refused otherwise; app keys
//     only outside user_key mode; redirect_url only in oauth mode, an
//     absolute URL; referrer filters are host patterns with * wildcards;
//   - a service's gateway block (GatewaySpec) has an absolute http(s)
//     api_backend, host names, a known credentials_location, and mapping
//     rules with 3scale's methods, patterns in APIcast's syntax
//     (ValidPattern) and metrics of the service.
//
// Messages never contain a secret's value.
package catalog
