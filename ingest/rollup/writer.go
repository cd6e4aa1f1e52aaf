package rollup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

// record is one Kafka record as the writer needs it.
type record struct {
	Partition int32
	Offset    int64
	Value     []byte
}

// marker is one offset marker row: table contains every record of Kafka
// partition kp below ko.
type marker struct {
	kp int32
	ko int64
}

// writer turns batches of records into one insert per table, each carrying
// its own offset markers. It keeps, per table and Kafka partition, the next
// offset the table already contains; a record below it is skipped for that
// table. See doc.go for why this makes replays harmless.
type writer struct {
	conn   driver.Conn
	db     string
	tables []string
	agg    *aggregator
	dec    event.Decoder
	log    *slog.Logger
	st     *counters
	// insertTimeout bounds one INSERT (client side).
	insertTimeout time.Duration
	// owner, if set, is asked before every INSERT whether this member may
	// still write (see lease).
	owner func() error

	mu    sync.Mutex
	next  map[string]map[int32]int64 // table -> partition -> next offset contained
	dirty bool                       // an insert failed: reread markers before writing

	hour, day, month map[aggKey]int64
	ev               event.Event
}

func newWriter(conn driver.Conn, db string, h Hierarchy, raw bool, log *slog.Logger, st *counters) *writer {
	tables := []string{chschema.UsageMinute, chschema.UsageHour, chschema.UsageDay, chschema.UsageMonth, chschema.UsageSets}
	if raw {
		tables = append(tables, chschema.EventsRaw)
	}
	if log == nil {
		log = slog.Default()
	}
	if st == nil {
		st = &counters{}
	}
	next := make(map[string]map[int32]int64, len(tables))
	for _, t := range tables {
		next[t] = map[int32]int64{}
	}
	return &writer{
		conn: conn, db: db, tables: tables, agg: newAggregator(h, raw), log: log, st: st,
		insertTimeout: 30 * time.Second, next: next,
		hour: map[aggKey]int64{}, day: map[aggKey]int64{}, month: map[aggKey]int64{},
	}
}

// load reads the markers of every table for the given partitions. A
// partition a table has no marker for starts at offset 0 in that table (the
// earliest record Kafka still has).
func (w *writer) load(ctx context.Context, kps []int32) error {
	if err := w.fence(ctx, kps); err != nil {
		return err
	}
	got := make(map[string]map[int32]int64, len(w.tables))
	for _, t := range w.tables {
		m, err := chschema.Markers(ctx, w.conn, w.db, t)
		if err != nil {
			return err
		}
		got[t] = m
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range w.tables {
		for _, kp := range kps {
			w.next[t][kp] = got[t][kp] // 0 when absent
		}
	}
	return nil
}

// queryIDPrefix starts the query_id of every rollup insert into db; the
// rest names the table and the Kafka partitions the insert covers
// (".p0.p3."), so that fence can find inserts touching a partition.
func queryIDPrefix(db string) string { return "sluice-rollup:" + db + ":" }

func (w *writer) queryID(table string, markers []marker) string {
	var sb strings.Builder
	sb.WriteString(queryIDPrefix(w.db))
	sb.WriteString(table)
	sb.WriteString(":.")
	for _, m := range markers {
		sb.WriteByte('p')
		sb.WriteString(strconv.Itoa(int(m.kp)))
		sb.WriteByte('.')
	}
	sb.WriteByte(':')
	sb.WriteString(strconv.FormatInt(time.Now().UnixNano(), 36))
	return sb.String()
}

// fence ends every rollup insert still running on the server that covers
// one of kps (KILL QUERY ... SYNC), so that the markers read next are final.
// Such an insert belongs to a writer that died or gave up: a process killed
// right after sending a block leaves the server to finish the insert on its
// own, possibly after the next owner has read the markers, which would count
// that block twice. Once the query is gone, its part is either committed
// (and its markers visible) or never will be.
func (w *writer) fence(ctx context.Context, kps []int32) error {
	if len(kps) == 0 {
		return nil
	}
	var conds []string
	for _, kp := range kps {
		conds = append(conds, "query_id LIKE '"+queryIDPrefix(w.db)+"%.p"+strconv.Itoa(int(kp))+".%'")
	}
	where := strings.Join(conds, " OR ")
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := w.conn.Exec(chschema.Settings(fctx, 30*time.Second), "KILL QUERY WHERE "+where+" SYNC")
	if err == nil {
		return nil
	}
	if ex := (*clickhouse.Exception)(nil); !errors.As(err, &ex) || ex.Code != cannotKill {
		return fmt.Errorf("rollup: fence in-flight inserts: %w", err)
	}
	// The insert is past the point where it can be stopped (it is writing
	// its part, or has written it and is still listed): it ends on its own.
	// Waiting until it is gone fences as well as the kill: then it is
	// committed, with its markers visible, or failed.
	for {
		n, err := w.running(fctx, where)
		if err != nil {
			return fmt.Errorf("rollup: fence in-flight inserts: %w", err)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-fctx.Done():
			return fmt.Errorf("rollup: fence: %d unkillable inserts still running: %w", n, fctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cannotKill is ClickHouse's CANNOT_KILL: "it consists of unkillable stages".
const cannotKill = 380

// running counts the server's queries matching where.
func (w *writer) running(ctx context.Context, where string) (uint64, error) {
	rows, err := chschema.Query(ctx, w.conn, 10*time.Second, "SELECT count() FROM system.processes WHERE "+where)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, err
		}
	}
	return n, rows.Err()
}

// startOffsets returns where to start consuming each partition: the smallest
// next offset over the tables (every table has every record below it).
func (w *writer) startOffsets(kps []int32) map[int32]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[int32]int64, len(kps))
	for _, kp := range kps {
		first := true
		for _, t := range w.tables {
			n := w.next[t][kp]
			if first || n < out[kp] {
				out[kp], first = n, false
			}
		}
	}
	return out
}

// forget drops partitions this process no longer owns.
func (w *writer) forget(kps []int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range w.tables {
		for _, kp := range kps {
			delete(w.next[t], kp)
		}
	}
}

// write stores one batch. recs hold records of any partitions, each
// partition's in offset order. On error nothing is known about the failed
// insert (it may or may not have landed), so the writer rereads the markers
// before its next write; calling write again with the same records is the
// retry, and is exact.
func (w *writer) write(ctx context.Context, recs []record, now time.Time) error {
	if len(recs) == 0 {
		return nil
	}
	// Records of a partition this writer was not assigned (or has been
	// revoked) must not be written: their thresholds are unknown, and
	// another member may own the partition now.
	w.mu.Lock()
	owned := w.next[w.tables[0]]
	var keep []record
	for i, r := range recs {
		if _, ok := owned[r.Partition]; !ok {
			if keep == nil {
				keep = append(make([]record, 0, len(recs)), recs[:i]...)
			}
			continue
		}
		if keep != nil {
			keep = append(keep, r)
		}
	}
	w.mu.Unlock()
	if keep != nil {
		w.log.Warn("rollup: dropped records of partitions not assigned to this member", "records", len(recs)-len(keep))
		recs = keep
		if len(recs) == 0 {
			return nil
		}
	}
	last := map[int32]int64{}
	for _, r := range recs {
		if r.Offset >= last[r.Partition] {
			last[r.Partition] = r.Offset
		}
	}
	kps := make([]int32, 0, len(last))
	for kp := range last {
		kps = append(kps, kp)
	}
	slices.Sort(kps)
	if w.dirty {
		if err := w.load(ctx, kps); err != nil {
			return err
		}
		w.dirty = false
	}

	// Group the tables by their thresholds for this batch's partitions:
	// normally every table agrees and the batch is aggregated once.
	w.mu.Lock()
	var order []string
	groups := map[string][]string{}
	thr := map[string]map[int32]int64{}
	for _, t := range w.tables {
		var sb strings.Builder
		m := make(map[int32]int64, len(kps))
		for _, kp := range kps {
			n := w.next[t][kp]
			m[kp] = n
			sb.WriteString(strconv.FormatInt(n, 10))
			sb.WriteByte(',')
		}
		key := sb.String()
		if _, ok := groups[key]; !ok {
			order = append(order, key)
			thr[key] = m
		}
		groups[key] = append(groups[key], t)
	}
	w.mu.Unlock()

	written := time.Unix(windowStart(limiter.Day, now.Unix()), 0).UTC()
	for _, key := range order {
		th := thr[key]
		var markers []marker
		for _, kp := range kps {
			if last[kp]+1 > th[kp] {
				markers = append(markers, marker{kp, last[kp] + 1})
			}
		}
		if len(markers) == 0 {
			w.st.skipped.Add(uint64(len(recs)))
			continue
		}
		w.agg.reset()
		var n, skipped uint64
		for i := range recs {
			r := &recs[i]
			if r.Offset < th[r.Partition] {
				skipped++
				continue
			}
			if err := w.dec.Decode(r.Value, &w.ev); err != nil {
				w.st.undecodable.Add(1)
				w.log.Error("rollup: undecodable usage record skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
				continue
			}
			w.agg.add(&w.ev, r.Partition, r.Offset)
			n++
		}
		w.st.skipped.Add(skipped)
		if w.agg.clamped > 0 {
			w.log.Warn("rollup: usage times outside 1970..2106 replaced by receive times", "events", w.agg.clamped)
		}
		if w.agg.negative > 0 {
			w.st.negative.Add(w.agg.negative)
			w.log.Warn("rollup: negative usage values dropped", "entries", w.agg.negative)
		}
		if w.agg.saturated > 0 {
			w.st.saturated.Add(w.agg.saturated)
			w.log.Warn("rollup: usage sums past 9223372036854775807 stored as 9223372036854775807", "table", chschema.UsageMinute, "adds", w.agg.saturated)
		}
		// The tables are independent (each has its own markers), so their
		// inserts run concurrently; each only reads the aggregates.
		tables := groups[key]
		errs := make([]error, len(tables))
		var wg sync.WaitGroup
		for i, t := range tables {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rows, err := w.insert(ctx, t, markers, written, now)
				if err != nil {
					errs[i] = fmt.Errorf("rollup: insert into %s: %w", t, err)
					return
				}
				w.st.rows.Add(uint64(rows))
				w.mu.Lock()
				for _, m := range markers {
					w.next[t][m.kp] = m.ko
				}
				w.mu.Unlock()
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				w.st.writeErrors.Add(1)
				w.dirty = true
				return err
			}
		}
		if slices.Contains(groups[key], chschema.UsageMinute) {
			w.st.events.Add(n)
		}
	}
	w.st.batches.Add(1)
	return nil
}

func (w *writer) insert(ctx context.Context, table string, markers []marker, written, now time.Time) (int, error) {
	var rows map[aggKey]int64
	switch table {
	case chschema.UsageMinute:
		rows = w.agg.minute
	case chschema.UsageHour:
		w.regrain(table, w.hour, hourOf)
		rows = w.hour
	case chschema.UsageDay:
		w.regrain(table, w.day, dayOf)
		rows = w.day
	case chschema.UsageMonth:
		w.regrain(table, w.month, monthOf)
		rows = w.month
	}
	var clamped map[aggKey]int64
	if rows != nil {
		var err error
		if clamped, err = w.clampBig(ctx, table, rows); err != nil {
			return 0, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, w.insertTimeout)
	defer cancel()
	ctx = chschema.Settings(ctx, w.insertTimeout)
	ctx = clickhouse.Context(ctx, clickhouse.WithQueryID(w.queryID(table, markers)),
		clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": int(w.insertTimeout / time.Second)}))
	switch table {
	case chschema.UsageSets:
		return w.insertSets(ctx, markers, written, now)
	case chschema.EventsRaw:
		return w.insertRaw(ctx, markers, written, now)
	}
	if rows == nil {
		return 0, fmt.Errorf("unknown table %s", table)
	}
	return w.insertUsage(ctx, table, rows, clamped, markers, written, now)
}

// bigRow is the smallest row value clampBig checks against the table. Rows
// below it are inserted unchecked: a key already at MaxTotal that takes
// them wraps negative when its parts merge, which readers see (min(value)
// < 0) and present as MaxTotal; to wrap back to a positive value the key
// would need 2^31 such inserts, more than a rollup writes in years. Rows at
// or above it (4.3e9 units of one application and metric in one batch) are
// rare enough that one SELECT per table for their batch costs nothing.
const bigRow = 1 << 32

// clampBig keeps a key's total in table from passing chschema.MaxTotal,
// which a merge of its parts would wrap past 2^64 into a plausible positive
// value no reader could tell from a true one. For each row of at least
// bigRow it reads what table already holds for the row's key and returns,
// for the rows that would pass MaxTotal, the value to insert instead: what
// is left up to MaxTotal (0 once the key is saturated). Keys are written
// by one writer at a time (an application's events share a Kafka
// partition), so nothing changes the total between the read and the insert.
func (w *writer) clampBig(ctx context.Context, table string, rows map[aggKey]int64) (map[aggKey]int64, error) {
	var big []aggKey
	for k, v := range rows {
		if v >= bigRow {
			big = append(big, k)
		}
	}
	if len(big) == 0 {
		return nil, nil
	}
	out := map[aggKey]int64{}
	const chunk = 128 // keys per SELECT, bounding its size
	for len(big) > 0 {
		n := min(len(big), chunk)
		if err := w.clampChunk(ctx, table, rows, big[:n], out); err != nil {
			return nil, fmt.Errorf("rollup: totals of large rows in %s: %w", table, err)
		}
		big = big[n:]
	}
	return out, nil
}

func (w *writer) clampChunk(ctx context.Context, table string, rows map[aggKey]int64, keys []aggKey, out map[aggKey]int64) error {
	var sb strings.Builder
	sb.WriteString("SELECT tenant_id, service_id, app_id, plan_id, metric, reason, code, region, toUInt32(t), ")
	sb.WriteString(chschema.SumValue)
	sb.WriteString(" FROM " + w.db + "." + table + " WHERE ")
	args := make([]any, 0, 9*len(keys))
	for i, k := range keys {
		if i > 0 {
			sb.WriteString(" OR ")
		}
		sb.WriteString("(tenant_id = ? AND service_id = ? AND metric = ? AND app_id = ? AND t = toDateTime(?) AND plan_id = ? AND reason = ? AND code = ? AND region = ?)")
		args = append(args, k.tenant, k.service, k.metric, k.app, uint32(k.t), k.plan, k.reason, k.code, k.region)
	}
	sb.WriteString(" GROUP BY tenant_id, service_id, app_id, plan_id, metric, reason, code, region, t")
	rs, err := chschema.Query(ctx, w.conn, w.insertTimeout, sb.String(), args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		var k aggKey
		var t uint32
		var stored int64
		if err := rs.Scan(&k.tenant, &k.service, &k.app, &k.plan, &k.metric, &k.reason, &k.code, &k.region, &t, &stored); err != nil {
			return err
		}
		k.t = int64(t)
		v, ok := rows[k]
		if !ok {
			continue
		}
		if left := chschema.MaxTotal - stored; v > left {
			out[k] = left
			w.st.saturated.Add(1)
			w.log.Warn("rollup: usage past 9223372036854775807 for one key: stored up to it", "table", table,
				"tenant", k.tenant, "service", k.service, "app", k.app, "metric", k.metric, "dropped", v-left)
		}
	}
	return rs.Err()
}

// regrain fills dst from the batch's minute rows at grain g, for table.
func (w *writer) regrain(table string, dst map[aggKey]int64, g grain) {
	if n := regrain(dst, w.agg.minute, g, w.agg.wide); n > 0 {
		w.st.saturated.Add(n)
		w.log.Warn("rollup: usage sums past 9223372036854775807 stored as 9223372036854775807", "table", table, "adds", n)
	}
}

func appendCols(b driver.Batch, cols ...any) error {
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return nil
}

// insertUsage inserts rows (with the values of clamped where it has one) and
// the markers as one block.
func (w *writer) insertUsage(ctx context.Context, table string, rows, clamped map[aggKey]int64, markers []marker, written, now time.Time) (int, error) {
	n := len(rows) + len(markers)
	var (
		wr                                                 = make([]time.Time, n)
		tenant, service, app, plan, metric, reason, region = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		code                                               = make([]int16, n)
		ts                                                 = make([]time.Time, n)
		kp                                                 = make([]int32, n)
		ko, value                                          = make([]int64, n), make([]int64, n)
	)
	i := 0
	for k, v := range rows {
		if c, ok := clamped[k]; ok {
			v = c
		}
		tenant[i], service[i], app[i], plan[i], metric[i], reason[i], region[i] = k.tenant, k.service, k.app, k.plan, k.metric, k.reason, k.region
		code[i], ts[i], value[i] = k.code, time.Unix(k.t, 0).UTC(), v
		i++
	}
	fillMarkers(markers, now, ts[i:], kp[i:], ko[i:], value[i:])
	fill(wr, written)
	return n, w.send(ctx, "INSERT INTO "+w.db+"."+table+" (written, tenant_id, service_id, app_id, plan_id, metric, reason, code, region, t, kp, ko, value)",
		wr, tenant, service, app, plan, metric, reason, code, region, ts, kp, ko, value)
}

func (w *writer) insertSets(ctx context.Context, markers []marker, written, now time.Time) (int, error) {
	sets := w.agg.sets
	n := len(sets) + len(markers)
	var (
		wr                                 = make([]time.Time, n)
		tenant, service, app, plan, metric = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ts                                 = make([]time.Time, n)
		tsMS, value, ko                    = make([]int64, n), make([]int64, n), make([]int64, n)
		kp                                 = make([]int32, n)
	)
	i := 0
	for _, s := range sets {
		tenant[i], service[i], app[i], plan[i], metric[i] = s.tenant, s.service, s.app, s.plan, s.metric
		ts[i], tsMS[i], value[i], kp[i], ko[i] = time.UnixMilli(s.tsMS).UTC().Truncate(time.Second), s.tsMS, s.value, s.kp, s.ko
		i++
	}
	fillMarkers(markers, now, ts[i:], kp[i:], ko[i:], value[i:])
	fill(wr, written)
	return n, w.send(ctx, "INSERT INTO "+w.db+".usage_sets (written, tenant_id, service_id, app_id, plan_id, metric, t, ts_ms, value, kp, ko)",
		wr, tenant, service, app, plan, metric, ts, tsMS, value, kp, ko)
}

func (w *writer) insertRaw(ctx context.Context, markers []marker, written, now time.Time) (int, error) {
	c := &w.agg.rawCols
	for _, m := range markers {
		c.t = append(c.t, now.Unix())
		c.tsMS = append(c.tsMS, 0)
		c.receivedMS = append(c.receivedMS, 0)
		c.id = append(c.id, "")
		c.kind = append(c.kind, 0)
		c.tenant, c.service, c.app, c.plan = append(c.tenant, ""), append(c.service, ""), append(c.app, ""), append(c.plan, "")
		c.metrics, c.values, c.sets = append(c.metrics, []string{}), append(c.values, []int64{}), append(c.sets, []uint8{})
		c.code, c.reason, c.region, c.node = append(c.code, 0), append(c.reason, ""), append(c.region, ""), append(c.node, "")
		c.kp, c.ko = append(c.kp, m.kp), append(c.ko, m.ko)
	}
	n := c.len()
	wr := make([]time.Time, n)
	ts := make([]time.Time, n)
	for j := range wr {
		wr[j] = written
		ts[j] = time.Unix(c.t[j], 0).UTC()
	}
	return n, w.send(ctx, "INSERT INTO "+w.db+".events_raw (written, t, ts_ms, received_ms, id, kind, tenant_id, service_id, app_id, plan_id, metrics, values, sets, code, reason, region, node, kp, ko)",
		wr, ts, c.tsMS, c.receivedMS, c.id, c.kind, c.tenant, c.service, c.app, c.plan, c.metrics, c.values, c.sets, c.code, c.reason, c.region, c.node, c.kp, c.ko)
}

// send inserts one block of columns as a single batch (one part, see the
// package doc).
func (w *writer) send(ctx context.Context, query string, cols ...any) error {
	if w.owner != nil {
		if err := w.owner(); err != nil {
			return err
		}
	}
	b, err := w.conn.PrepareBatch(ctx, query)
	if err != nil {
		return err
	}
	if err := appendCols(b, cols...); err != nil {
		b.Abort()
		return err
	}
	return b.Send()
}

// fillMarkers writes marker rows into the column tails: value 1 keeps
// SummingMergeTree from dropping them, t is the write time.
func fillMarkers(markers []marker, now time.Time, ts []time.Time, kp []int32, ko, value []int64) {
	t := now.UTC().Truncate(time.Second)
	for i, m := range markers {
		ts[i], kp[i], ko[i], value[i] = t, m.kp, m.ko, 1
	}
}

// fill sets every element of s to v.
func fill[T any](s []T, v T) {
	for i := range s {
		s[i] = v
	}
}

// counters are the rollup's statistics.
type counters struct {
	events, batches, rows, skipped, undecodable, writeErrors, sessions atomic.Uint64
	negative, saturated, missing                                       atomic.Uint64
}
