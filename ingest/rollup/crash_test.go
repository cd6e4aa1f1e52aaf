package rollup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/chlocal"
)

// TestMain doubles as the rollup child process of the crash test: with
// SLUICE_ROLLUP_CHILD set, the test binary runs a Rollup until killed.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_ROLLUP_CHILD") != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

func runChild() int {
	var kopts []kgo.Opt
	if d, err := time.ParseDuration(os.Getenv("SLUICE_ROLLUP_SESSION")); err == nil {
		kopts = append(kopts, kgo.SessionTimeout(d), kgo.RebalanceTimeout(2*d))
	}
	r, err := New(Options{
		Brokers:        strings.Split(os.Getenv("SLUICE_ROLLUP_BROKERS"), ","),
		Topic:          os.Getenv("SLUICE_ROLLUP_TOPIC"),
		Group:          os.Getenv("SLUICE_ROLLUP_TOPIC"),
		ClickHouseAddr: os.Getenv("SLUICE_ROLLUP_CH"),
		Database:       testDB,
		Hierarchy:      testHierarchy,
		Raw:            true,
		InstanceID:     os.Getenv("SLUICE_ROLLUP_INSTANCE"),
		KafkaOpts:      kopts,
		MaxBatchEvents: 5000,
		WriteRetryFor:  5 * time.Second,
		Logger:         quietLogger(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "child stats: %+v\n", r.Stats())
	return 0
}

type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startChild starts a rollup child process with the static member id
// instance; env adds variables (SLUICE_ROLLUP_SESSION=<duration>: the group
// session timeout, and twice it the rebalance timeout).
func startChild(t *testing.T, brokers []string, chAddr string, logf *os.File, instance string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SLUICE_ROLLUP_CHILD=1", "SLUICE_ROLLUP_INSTANCE="+instance,
		"SLUICE_ROLLUP_BROKERS="+strings.Join(brokers, ","), "SLUICE_ROLLUP_CH="+chAddr, "SLUICE_ROLLUP_TOPIC="+testTopic, "SLUICE_TEST_LOG=1")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(c.done) }()
	return c
}

// produceInBackground runs produce in a goroutine; the channel is closed
// when every record is acknowledged.
func produceInBackground(t *testing.T, brokers []string, g *gen, m *model, n int, pace time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		produce(t, brokers, g, m, n, pace)
	}()
	return done
}

// childrenLog is the file the children write to; its tail is logged if the
// test fails.
func childrenLog(t *testing.T) *os.File {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), "children.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("children's log tail:\n%s", b)
		}
	})
	return logf
}

func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.done
}

// TestCrashExactlyOnce kills the rollup process with SIGKILL at random
// moments while events flow, and kills ClickHouse once for a few seconds;
// the totals in every rollup table must still equal the events produced.
func TestCrashExactlyOnce(t *testing.T) {
	ch, conn := startCH(t)
	brokers := startKafka(t, 4)
	logf := childrenLog(t)

	const events = 150_000
	g, m := newGen(11), newModel()
	producing := produceInBackground(t, brokers, g, m, events, 50*time.Millisecond) // ≈ 8 s

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	chKilled := false
	for {
		c := startChild(t, brokers, ch.Addr(), logf, "crash-child")
		if kills == 2 && !chKilled {
			// ClickHouse crashes while the rollup runs, stays down, comes back.
			time.Sleep(700 * time.Millisecond)
			ch.Kill()
			time.Sleep(3 * time.Second)
			ch2, err := chlocal.Start(context.Background(), chlocal.Options{Dir: ch.Dir(), TCPPort: ch.TCPPort(), HTTPPort: ch.HTTPPort()})
			if err != nil {
				c.kill()
				t.Fatalf("restart ClickHouse: %v", err)
			}
			t.Cleanup(func() { ch2.Stop() })
			ch, chKilled = ch2, true
		}
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		c.kill()
		kills++
		select {
		case <-producing:
		default:
			continue
		}
		if kills >= 6 {
			break
		}
	}
	<-producing
	t.Logf("rollup killed %d times, ClickHouse killed once", kills)

	ends := endOffsets(t, brokers)
	var total int64
	for _, e := range ends {
		total += e
	}
	if total != events {
		t.Errorf("the topic holds %d records, want %d", total, events)
	}
	c := startChild(t, brokers, ch.Addr(), logf, "crash-child")
	waitCaughtUp(t, conn, ends, 90*time.Second)
	c.cmd.Process.Signal(syscall.SIGTERM)
	<-c.done
	checkTables(t, conn, m)
	checkRaw(t, conn, m)
}

// TestClickHouseOutage stops ClickHouse (SIGKILL: a SIGTERM waits up to
// ~10 s for idle client connections, which only slows the test) for longer than the
// rollup's write retry budget while events flow: batches fail, sessions
// restart, and afterwards the totals are exact.
func TestClickHouseOutage(t *testing.T) {
	ch, conn := startCH(t)
	brokers := startKafka(t, 3)
	g, m := newGen(21), newModel()
	produce(t, brokers, g, m, 20000, 0)
	r, err := New(Options{Brokers: brokers, Topic: testTopic, Group: testTopic, ClickHouseAddr: ch.Addr(), Database: testDB, Hierarchy: testHierarchy,
		Raw: true, MaxBatchEvents: 4000, WriteRetryFor: 2 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitCaughtUp(t, conn, endOffsets(t, brokers), 60*time.Second)

	ch.Kill()
	produce(t, brokers, g, m, 20000, 0) // arrives while ClickHouse is down
	time.Sleep(5 * time.Second)
	ch2, err := chlocal.Start(context.Background(), chlocal.Options{Dir: ch.Dir(), TCPPort: ch.TCPPort(), HTTPPort: ch.HTTPPort()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch2.Stop() })
	produce(t, brokers, g, m, 20000, 0)
	waitCaughtUp(t, conn, endOffsets(t, brokers), 60*time.Second)
	cancel()
	<-done
	st := r.Stats()
	if st.Sessions < 2 || st.WriteErrors == 0 {
		t.Errorf("stats %+v: want failed writes and a restarted session during the outage", st)
	}
	checkTables(t, conn, m)
	checkRaw(t, conn, m)
}
