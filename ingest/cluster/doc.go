// Package cluster makes the API nodes of one region act as one limiter: every
// node projects the whole usage log into its own limiter, and every
// application's calls are decided by one node, the owner of the
// application's partition of the usage topic.
//
// # Model
//
// The usage topic is partitioned by application (the producer's key
// partitioner, kafka.Partition). The API nodes of a region form the Kafka
// consumer group "sluice-api-<region>" (cooperative-sticky balancing) over
// that topic; the partitions the group assigns to a node are the ones it
// owns. A node advertises where the others reach it (its group client id
// carries the address) and learns the other owners from the group's
// description, refreshed every second and whenever a forward finds the
// directory stale.
//
// Beside its group membership every node tails every partition of the usage
// topic from the offsets its counter restore ended at, and applies the usage
// other processes produced to its limiter (Projection): a node's own events
// are recognised by their id prefix (event.IDGenerator) and not applied
// twice; "#N" sets apply in log order. So every node holds near-current
// counters for every application, and a new owner only has to read its new
// partitions to their end before it decides.
//
// A call (authorize, authrep and their OAuth variants) for an application
// whose plan has an exact limit is decided by the owner: a node that does not
// own the partition forwards the request, unchanged, over one of a few
// long-lived connections to the owner on which concurrent calls are pipelined
// (HTTP/1.1, so the owner needs nothing special; HTTPS with
// Options.ForwardTLS, when the nodes serve TLS), and
// relays the owner's answer (status, headers, body) to the
// caller. A forwarded call is never forwarded again: a node that receives one
// for a partition it does not own answers "not owner" to the forwarder, which
// refreshes its directory and tries again. Reports are never forwarded: they
// are not checked, so any node counts them and the others learn of them from
// the log. Plans whose limits all have consistency "local" are decided by
// whichever node receives the call, from its projection.
//
// # Guarantee: exact limits
//
// While a partition's owner holds it, calls for its applications are decided
// by the owner's limiter, whose check-and-increment is atomic, so
//
//	the units admitted by authrep for an exact limit within one window never
//	exceed its max, across any number of handoffs,
//
// provided every unit admitted before a handoff reaches the new owner before
// it decides. The handoff rule ensures that:
//
//  1. A node losing partition p (revoked by a rebalance, or handed over while
//     draining) first stops deciding for p: new calls for p wait or are
//     forwarded. It then waits until no decision for p is in flight (every
//     decision has appended its event), and then until every event it
//     appended has been acknowledged by Kafka (the producer's Flush). Only
//     then does its revoke callback return, and only after that can the
//     cooperative protocol assign p to another member.
//  2. The node gaining p lists p's end offset E after the assignment, so E is
//     above every event of step 1, waits until its projection has applied p
//     up to E, and only then decides for p. Calls for p that arrive meanwhile
//     wait (Options.HandoffTimeout, default 2 s) and then get 503 with
//     Retry-After.
//
// Every unit the old owner admitted is below E, so it is in the new owner's
// counters before the new owner admits anything: the two owners' admissions
// add up within max. If the flush of step 1 does not finish within the
// handoff timeout (Kafka unreachable), the old owner gives p up anyway and
// counts it (sluice_cluster_handoff_flush_timeouts_total): the units still in
// its producer may then be admitted once more, so the overshoot of that
// handoff is at most those units.
//
// Usage that reaches an owner through the log (reports, local decisions made
// elsewhere) is counted when its projection applies it: reports are counted,
// never refused, as in a single node.
//
// # Owner unreachable
//
// A node whose forward cannot connect to the owner (killed, cut off, or a
// TLS handshake that fails before the request is written) before
// the group has moved the owner's partitions (within the group session
// timeout, 6 s), or that cannot itself read the group's assignments for 3 s
// (Kafka unreachable from it, so that it has lost its own partitions and
// knows no owner), or whose own session expired and whose lost partitions
// have no caught-up owner yet, decides the call itself from its projection
// when
// Options.OwnerUnreachable is Local (the default), counting the decision in
// sluice_cluster_unreachable_decisions_total and the units it admitted in
// sluice_cluster_unreachable_units_total; with Refuse it answers 503. A
// forward whose connection breaks after the request was sent answers 503:
// the owner may have counted the call, so deciding again could count it
// twice.
//
// The overshoot this allows, for one window of an exact limit, is at most
//
//	U + D
//
// where U is the units admitted by unreachable-owner decisions in that window
// (each decided from a projection that may not yet hold the others' latest
// admissions; the owner-to-be counts them once its projection applies them),
// and D is the units a killed owner acknowledged but had not yet delivered to
// Kafka when its partitions moved (they are in its ack journal and reach
// Kafka when it restarts; at most its producer's in-flight events, about
// rate × (linger + one broker round trip)). Once the group has settled,
// admission is exact again.
//
// # Local consistency
//
// A limit with consistency "local" is decided by the receiving node from its
// own projection, without the forwarding hop. A node's projection lacks what
// the other nodes admitted within the last replication lag (their producer's
// linger and acknowledgement plus this node's fetch), so for one window
//
//	overshoot <= sum over the other nodes j of (rate_j × lag_j)
//
// where rate_j is node j's admission rate for the application and lag_j the
// time its events take to reach the deciding node's projection
// (sluice_cluster_projection_lag_seconds shows the lag per partition).
package cluster
