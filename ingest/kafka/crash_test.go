package kafka

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/kafkatest"
)

// crashChildEnv makes the test binary run crashChild instead of the tests:
// the SIGKILL test re-executes itself as the process it kills.
const crashChildEnv = "SLUICE_KAFKA_CRASH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild opens a Producer on the spool directory it is given (which
// recovers what the previous child left), then appends events from a few
// goroutines as fast as it can and prints the id of each event Append
// accepted, one write per id, until it is killed.
func crashChild() {
	mode := os.Getenv(crashChildEnv)
	o := Options{
		Brokers:         strings.Split(os.Getenv("SLUICE_KAFKA_CRASH_BROKER"), ","),
		Topic:           os.Getenv("SLUICE_KAFKA_CRASH_TOPIC"),
		SpoolDir:        os.Getenv("SLUICE_KAFKA_CRASH_DIR"),
		DeliveryTimeout: time.Second,
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		ClientOpts:      []kgo.Opt{kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond })},
	}
	if os.Getenv("SLUICE_KAFKA_CRASH_VERBOSE") == "" {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch mode {
	case "early":
		// Killed after a random 20-420ms, during New's recovery or soon after.
	case "spool": // the spool fills and drains all the time
		o.MaxBuffered = 30
	case "journal": // the journal fills up: events fall back to the spool
		o.MaxBuffered = 5000
		o.JournalBytes = 16 * 4096
	}
	p, err := New(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: New:", err)
		os.Exit(3)
	}
	fmt.Println("ready")
	ids := event.NewIDGenerator()
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := make([]byte, 33)
			line[32] = '\n'
			var e event.Event
			for i := 0; ; i++ {
				now := time.Now().UnixMilli()
				e = event.Event{
					ID: ids.Next(), Kind: event.KindReport, TS: now, Received: now,
					TenantID: "t1", ServiceID: "svc", AppID: "app-" + strconv.Itoa(w*10+i%7), PlanID: "basic",
					Usage: append(e.Usage[:0], event.Usage{Metric: "hits", Value: 1}),
				}
				if err := p.Append(&e); err != nil {
					if errors.Is(err, ErrSpoolFull) {
						continue
					}
					fmt.Fprintln(os.Stderr, "child: Append:", err)
					os.Exit(4)
				}
				hex.Encode(line, e.ID[:])
				os.Stdout.Write(line)
				if mode == "spool" && i%64 == 0 {
					time.Sleep(time.Millisecond) // let the drainer catch up now and then
				}
			}
		}()
	}
	wg.Wait()
}

// runCrashChild starts a child on dir, waits until it has acknowledged
// some events, lets it run for a random while (meanwhile calling during, if
// set), SIGKILLs it and returns the ids it printed.
func runCrashChild(t *testing.T, mode, broker, topic, dir string, rng *rand.Rand, during func()) [][16]byte {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+mode,
		"SLUICE_KAFKA_CRASH_BROKER="+broker, "SLUICE_KAFKA_CRASH_TOPIC="+topic, "SLUICE_KAFKA_CRASH_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the child: %v", err)
	}
	defer cmd.Process.Kill() // if the test fails before the SIGKILL below
	var ids [][16]byte
	first := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			line := sc.Bytes()
			if string(line) == "ready" {
				continue
			}
			var id [16]byte
			if _, err := hex.Decode(id[:], line); err != nil || len(line) != 32 {
				done <- fmt.Errorf("child printed %q", line)
				return
			}
			ids = append(ids, id)
			if n++; n == 100 {
				close(first)
			}
		}
		done <- sc.Err()
	}()
	wait := first
	if mode == "early" { // kill at any moment, likely while New recovers
		wait = make(chan struct{})
		close(wait)
	}
	select {
	case <-wait:
	case err := <-done:
		t.Fatalf("child (%s) ended before acknowledging 100 events: %v (%v)", mode, err, cmd.Wait())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("child (%s) acknowledged nothing within 60s", mode)
	}
	if during != nil {
		during()
	}
	time.Sleep(time.Duration(20+rng.IntN(400)) * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("reading the child's ids: %v", err)
	}
	_ = cmd.Wait() // "signal: killed"
	return ids
}

// TestSIGKILLLosesNothing kills producers with SIGKILL at random moments —
// sending directly, spooling and draining, with a full journal, and while
// the broker is down — each new one recovering what the last left, then
// checks that Kafka holds every event any of them acknowledged exactly once
// and no event twice.
//
// With SLUICE_KAFKA_BROKERS set it runs against that broker (a fresh topic)
// instead; the outage rounds then run only if SLUICE_KAFKA_STOP_CMD and
// SLUICE_KAFKA_START_CMD give shell commands that stop and start it (e.g.
// deploy/kafka/start.sh --stop DIR and deploy/kafka/start.sh DIR PORT).
func TestSIGKILLLosesNothing(t *testing.T) {
	var c *kfake.Cluster
	var port int
	var kdir string
	broker, topic := strings.Join(kafkatest.External(), ","), testTopic
	if broker == "" {
		port = freePort(t)
		kdir = t.TempDir()
		c = startBroker(t, port, kdir)
		defer func() { c.Close() }()
		broker = "127.0.0.1:" + strconv.Itoa(port)
	} else {
		topic = createTopic(t, broker)
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	acked := map[[16]byte]bool{}
	modes := []string{"direct", "spool", "journal", "outage", "early", "direct", "spool", "early", "outage", "direct"}
	stopCmd, startCmd := os.Getenv("SLUICE_KAFKA_STOP_CMD"), os.Getenv("SLUICE_KAFKA_START_CMD")
	shell := func(cmd string) {
		if out, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
	}
	stop, start := func() { c.Close() }, func() { c = startBroker(t, port, kdir) }
	if c == nil {
		stop, start = func() { shell(stopCmd) }, func() { shell(startCmd) }
	}
	for round, mode := range modes {
		if mode == "outage" && c == nil && (stopCmd == "" || startCmd == "") {
			continue
		}
		var during func()
		childMode := mode
		if mode == "outage" {
			childMode = "direct"
			during = func() { // the broker goes away under the child's feet
				time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
				stop()
				time.Sleep(300 * time.Millisecond)
			}
		}
		ids := runCrashChild(t, childMode, broker, topic, dir, rng, during)
		for _, id := range ids {
			acked[id] = true
		}
		if mode == "outage" {
			start()
		}
		t.Logf("round %d (%s): %d events acknowledged before SIGKILL", round, mode, len(ids))
	}
	// A last producer recovers what the last child left, and stops cleanly.
	o := testOptions(t, port)
	o.Brokers, o.Topic, o.SpoolDir = strings.Split(broker, ","), topic, dir
	p := newProducer(t, o)
	st := p.Stats()
	if st.Spooling || st.JournalPending != 0 {
		t.Fatalf("New returned before recovering (Kafka is up): %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("final producer: %+v", st)

	counts := readAll(t, strings.Split(broker, ","), topic)
	missing, dups := 0, 0
	for id := range acked {
		if counts[id] == 0 {
			missing++
		}
	}
	for _, n := range counts {
		if n > 1 {
			dups++
		}
	}
	t.Logf("%d acknowledged ids, %d distinct events in Kafka", len(acked), len(counts))
	if missing > 0 || dups > 0 {
		t.Fatalf("%d acknowledged events missing from Kafka, %d events in Kafka more than once", missing, dups)
	}
}

// createTopic makes a fresh 4-partition topic on an external broker.
func createTopic(t *testing.T, brokers string) string {
	t.Helper()
	return (&kafkatest.Broker{Addrs: strings.Split(brokers, ",")}).Topic(t, "sluice.usage.test", 4)
}

// readAll reads the whole topic up to its current end offsets and counts
// the events by id.
func readAll(t *testing.T, brokers []string, topic string) map[[16]byte]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	adm.Close()
	if err != nil {
		t.Fatalf("listing end offsets: %v", err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	counts := map[[16]byte]int{}
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %d partitions not read to their end", topic, len(left))
		}
		fs.EachRecord(func(r *kgo.Record) {
			var e event.Event
			if err := event.Decode(r.Value, &e); err != nil {
				t.Fatalf("record at offset %d does not decode: %v", r.Offset, err)
			}
			counts[e.ID]++
			if end, ok := left[r.Partition]; ok && r.Offset >= end-1 {
				delete(left, r.Partition)
			}
		})
	}
	return counts
}

// journalFrame is the journal payload of e, as produceDirect builds it.
func journalFrame(e *event.Event) []byte {
	b := []byte{}
	b = appendVarint(b, e.Received)
	key := event.Key(nil, e.ServiceID, e.AppID)
	b = appendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return event.AppendEvent(b, e)
}

// TestRecoveryChecksKafka sets up exactly what a kill leaves behind — journal
// frames not marked done, some of which the broker had written, and a spool
// whose first batch was sent but not committed — and checks that a new
// Producer sends each event exactly once.
func TestRecoveryChecksKafka(t *testing.T) {
	port := freePort(t)
	c := startBroker(t, port, "")
	defer c.Close()
	o := testOptions(t, port)
	src := newSource(1) // one app: one partition, so order is checkable
	evs := src.events(60)
	// Kafka already has events 0-9 (acknowledged before the kill) and
	// 10-14 (written, acknowledgement lost).
	produceDirect(t, o.Brokers, evs[0:15])
	// The journal holds 10-29 pending (10-14 written, 15-29 not).
	j, _, err := openJournal(filepath.Join(o.SpoolDir, "journal"), DefaultJournalBytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 30; i++ {
		b := journalFrame(&evs[i])
		if _, ok := j.append(b, crc32.Checksum(b, castagnoli), jDirect); !ok {
			t.Fatal("journal full")
		}
	}
	j.close()
	// The spool's main log holds 30-59; the drainer had sent 30-39 before
	// the kill, without committing the cursor.
	l, err := openSegLog(filepath.Join(o.SpoolDir, "main"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := 30; i < 60; i++ {
		key := event.Key(nil, evs[i].ServiceID, evs[i].AppID)
		start := l.startFrame(evs[i].Received, key)
		l.wbuf = event.AppendEvent(l.wbuf, &evs[i])
		if err := l.endFrame(start); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.closeAll(); err != nil {
		t.Fatal(err)
	}
	produceDirect(t, o.Brokers, evs[30:40])

	p := newProducer(t, o)
	st := p.Stats()
	if st.Spooling || st.JournalPending != 0 {
		t.Fatalf("New returned before recovering: %+v", st)
	}
	if st.Recovered != 15 || st.Deduplicated != 15 || st.SpoolDrained != 20 {
		t.Fatalf("stats %+v: want 15 recovered from the journal, 15 found in Kafka, 20 drained", st)
	}
	src.next(&evs[0]) // one more event after recovery, sent directly
	if err := p.Append(&evs[0]); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := consume(t, port, 61, 10*time.Second)
	if len(got.byID) != 61 || got.duplicates != 0 {
		t.Fatalf("Kafka holds %d distinct events and %d duplicates, want 61 and 0", len(got.byID), got.duplicates)
	}
}

func appendVarint(b []byte, v int64) []byte { return appendUvarint(b, uint64(v<<1)^uint64(v>>63)) }
func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// TestRecoveryRestoresSpoolTail: events spooled while the broker was down
// sit in the spool's write buffer (and the journal) until 64 KiB gather;
// after a kill, the ones the file lacks are appended to it from the journal,
// the ones it has are not, and all arrive once, in order.
func TestRecoveryRestoresSpoolTail(t *testing.T) {
	port := freePort(t)
	o := testOptions(t, port)
	src := newSource(1)
	evs := src.events(40)
	// The main log's file has events 0-24; the journal has 20-39 as
	// spooled frames not marked done (20-24 were flushed just before the
	// kill, 25-39 were only in the write buffer).
	l, err := openSegLog(filepath.Join(o.SpoolDir, "main"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 25; i++ {
		start := l.startFrame(evs[i].Received, event.Key(nil, evs[i].ServiceID, evs[i].AppID))
		l.wbuf = event.AppendEvent(l.wbuf, &evs[i])
		if err := l.endFrame(start); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.closeAll(); err != nil {
		t.Fatal(err)
	}
	j, _, err := openJournal(filepath.Join(o.SpoolDir, "journal"), DefaultJournalBytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := 20; i < 40; i++ {
		b := journalFrame(&evs[i])
		if _, ok := j.append(b, crc32.Checksum(b, castagnoli), jMain); !ok {
			t.Fatal("journal full")
		}
	}
	j.close()

	c := startBroker(t, port, "")
	defer c.Close()
	p := newProducer(t, o)
	st := p.Stats()
	if st.Spooling || st.JournalPending != 0 || st.SpoolDrained != 40 || st.Recovered != 0 {
		t.Fatalf("stats %+v: want the 40 events drained from the spool, nothing pending", st)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := consume(t, port, 40, 10*time.Second)
	got.check(t, src, 40)
	if got.duplicates != 0 {
		t.Fatalf("%d duplicates", got.duplicates)
	}
}

// TestRecoveryWhileBrokerDown: a producer restarts after a kill while the
// broker is down. New returns (after RecoverWait), new events queue in the
// spool, and when the broker is back the journal's events are checked,
// resent if missing, and everything arrives exactly once.
func TestRecoveryWhileBrokerDown(t *testing.T) {
	port := freePort(t)
	kdir := t.TempDir()
	c := startBroker(t, port, kdir)
	o := testOptions(t, port)
	src := newSource(2)
	evs := src.events(20)
	// Kafka has 0-4 (written before the kill, acknowledgement lost); the
	// journal has all 20 pending.
	produceDirect(t, o.Brokers, evs[0:5])
	c.Close()
	j, _, err := openJournal(filepath.Join(o.SpoolDir, "journal"), DefaultJournalBytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		b := journalFrame(&evs[i])
		if _, ok := j.append(b, crc32.Checksum(b, castagnoli), jDirect); !ok {
			t.Fatal("journal full")
		}
	}
	j.close()

	o.RecoverWait = 500 * time.Millisecond
	start := time.Now()
	p := newProducer(t, o)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("New took %v with the broker down; RecoverWait is %v", d, o.RecoverWait)
	}
	st := p.Stats()
	if !st.Spooling || st.JournalPending != 20 {
		t.Fatalf("stats %+v: want spooling with the 20 journal events pending", st)
	}
	appendTimed(t, p, src, 30) // queue behind the recovered ones
	c = startBroker(t, port, kdir)
	defer c.Close()
	waitFor(t, "recovery and drain", 60*time.Second, func() bool {
		st := p.Stats()
		return !st.Spooling && st.JournalPending == 0
	})
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = p.Stats()
	if st.Recovered != 15 || st.Deduplicated != 5 || st.SpoolDrained != 30 {
		t.Fatalf("stats %+v: want 15 resent from the journal, 5 found in Kafka, 30 drained", st)
	}
	got := consume(t, port, 50, 10*time.Second)
	got.check(t, src, 50) // once each, in order per app
	if got.duplicates != 0 {
		t.Fatalf("%d duplicates", got.duplicates)
	}
}

// produceDirect writes evs to the topic the way a Producer does (same key,
// partitioner and record timestamp) but around it: what the broker already
// holds when a recovery test's Producer starts.
func produceDirect(t *testing.T, brokers []string, evs []event.Event) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(testTopic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(kgo.PartitionerHasher(partitionOf))))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range evs {
		key := event.Key(nil, evs[i].ServiceID, evs[i].AppID)
		r := &kgo.Record{Key: key, Value: event.AppendEvent(nil, &evs[i]), Timestamp: time.UnixMilli(evs[i].Received)}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}
