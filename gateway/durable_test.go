package gateway_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

// TestDurableBacklogSurvivesGatewayKill is the scenario: backend B is
// unreachable (its toxiproxy is down) while 10,000 writes are acknowledged, and the
// gateway is killed with SIGKILL. A new gateway on the same backlog_dir loads B's
// backlog and, once B is reachable again, replays it: B holds every write, in order,
// and is in sync. Then the new gateway is killed while both are connected: the next
// one cannot know what was in flight, so B (not the primary) is out of sync.
func TestDurableBacklogSurvivesGatewayKill(t *testing.T) {
	a, b := testserver.StartRedis(t), testserver.StartRedis(t)
	proxy := testserver.StartProxy(t, b.Addr)
	dir := t.TempDir()
	settings := []string{"servers=" + a.Addr + "," + proxy.Addr, "backlog_dir=" + dir, "auto_resync=false"}
	g1 := startGatewayProcess(t, 2, settings...)
	c := redis.NewClient(&redis.Options{Addr: g1.addr, Protocol: 2})
	defer c.Close()
	c3 := redis.NewClient(&redis.Options{Addr: g1.addr, Protocol: 2, DB: 3})
	defer c3.Close()
	for i := range 100 {
		if err := c.Set(ctx, "k"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// B must have answered everything, or the write in flight when it goes counts as lost.
	eventually(t, func() bool { st := g1.backend(1); return st.InFlight == 0 && st.QueuedBytes == 0 }, "B answered")
	proxy.Down()
	eventually(t, func() bool { return !g1.backend(1).Connected }, "B seen down")
	const writes = 10_000
	for i := 0; i < writes; i += 100 {
		pipe := c.Pipeline()
		for j := i; j < i+100; j++ {
			pipe.RPush(ctx, "list", j)
		}
		pipe.Incr(ctx, "counter")
		pipe.IncrByFloat(ctx, "float", 0.1) // replicated by effect: B gets SET of A's result
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("writes while B is down: %v", err)
		}
		if err := c3.Set(ctx, "db3-"+strconv.Itoa(i), i, 0).Err(); err != nil { // SELECTs inside the backlog
			t.Fatal(err)
		}
	}
	queued := g1.backend(1)
	time.Sleep(100 * time.Millisecond) // effects resolved at the last reply reach the file (see durable.go)
	g1.kill()
	if queued.QueuedBytes == 0 {
		t.Fatalf("nothing queued for B: %+v", queued)
	}

	g2 := startGatewayProcess(t, 1, settings...)
	if !strings.Contains(g2.logs.String(), "backlog loaded from backlog_dir") {
		t.Fatalf("no backlog loaded:\n%s", g2.logs.String())
	}
	proxy.Up()
	eventually(t, func() bool { st := g2.backend(1); return st.Connected && st.QueuedBytes == 0 && st.InFlight == 0 }, "B caught up")
	st := g2.backend(1)
	if st.OutOfSync || st.State != "up" {
		t.Fatalf("B after its backlog was replayed: %+v", st)
	}
	got, err := b.Client(0).LRange(ctx, "list", 0, -1).Result()
	if err != nil || len(got) != writes {
		t.Fatalf("B's list: %d elements, %v", len(got), err)
	}
	for i, v := range got {
		if v != strconv.Itoa(i) {
			t.Fatalf("B's list[%d] = %s: out of order", i, v)
		}
	}
	if n := b.Client(3).DBSize(ctx).Val(); n != writes/100 {
		t.Fatalf("B's database 3 has %d keys, want %d", n, writes/100)
	}
	for _, db := range []int{0, 3} {
		if da, dbb := a.Client(db).Do(ctx, "DEBUG", "DIGEST").String(), b.Client(db).Do(ctx, "DEBUG", "DIGEST").String(); da != dbb {
			t.Fatalf("digests differ: %s %s", da, dbb)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "backlog-*.log")); len(files) != 2 {
		t.Fatalf("backlog files: %v", files)
	}
	if fi, err := os.Stat(filepath.Join(dir, "backlog-"+strings.ReplaceAll(proxy.Addr, ":", "_")+".log")); err != nil || fi.Size() != 0 {
		t.Fatalf("B's backlog file after the replay: %v %v", fi, err)
	}

	g2.kill() // with both connected: what was in flight is unknown
	g3 := startGatewayProcess(t, 2, settings...)
	if st := g3.backend(1); !st.OutOfSync || !strings.Contains(st.OutOfSyncReason, "clean shutdown") {
		t.Fatalf("B after a crash while connected: %+v", st)
	}
	if st := g3.backend(0); st.OutOfSync {
		t.Fatalf("the primary (the reference) after a crash: %+v", st)
	}
	if err := g3.stop(); err != nil {
		t.Fatalf("SIGTERM: exit %v", err)
	}
	g4 := startGatewayProcess(t, 2, settings...) // after a clean stop, B's flag is kept
	if st := g4.backend(1); !st.OutOfSync {
		t.Fatalf("B after a clean restart: %+v", st)
	}
}

// TestBacklogDirNotWritable: a backlog_dir that cannot be created or written is a
// start-up error naming the path.
func TestBacklogDirNotWritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(file, "backlog")
	cfg, err := configuration.Load(configuration.Sources{Environ: []string{"DYNODE_SERVERS=127.0.0.1:1,127.0.0.1:2", "DYNODE_BACKLOG_DIR=" + dir}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.New(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("New with backlog_dir under a file: %v", err)
	}
}
