package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"go.uber.org/goleak"
)

// TestMain lets a test run a gateway in a child process (the test binary itself,
// with GATEWAY_TEST_CHILD=1 and the settings in DYNODE_* variables), so it can be
// killed with SIGKILL or stopped with SIGTERM as a real deployment is.
func TestMain(m *testing.M) {
	if os.Getenv("GATEWAY_TEST_CHILD") == "1" {
		os.Exit(runChildGateway())
	}
	// No goroutine may outlive the tests, but toxiproxy's own: its links can stay
	// blocked on a channel after their proxy stopped mid-stream (toxiproxy v2.5.0).
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).write"))
}

func runChildGateway() int {
	cfg, err := configuration.Load(configuration.Sources{Environ: os.Environ()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := g.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// gatewayProcess is a gateway running in a child process.
type gatewayProcess struct {
	t     testing.TB
	cmd   *exec.Cmd
	addr  string // client address
	admin string // admin base URL
	logs  *testserver.Buffer
	done  chan struct{} // closed when the process has exited
	err   error         // its exit status, once done
}

// startGatewayProcess runs a gateway child on fresh ports with the settings
// ("key=value") and waits until its admin server answers and wantUp backends are
// connected.
func startGatewayProcess(t testing.TB, wantUp int, settings ...string) *gatewayProcess {
	t.Helper()
	port, admin := testserver.FreePort(t), testserver.FreePort(t)
	env := append(os.Environ(), "GATEWAY_TEST_CHILD=1", "DYNODE_HOST=127.0.0.1", "DYNODE_PORT="+strconv.Itoa(port),
		"DYNODE_ADMIN_PORT="+strconv.Itoa(admin), "DYNODE_RECONNECT_DELAY_TIMEOUT=100ms", "DYNODE_CONNECT_TIMEOUT=1")
	for _, s := range settings {
		k, v, _ := strings.Cut(s, "=")
		env = append(env, "DYNODE_"+strings.ToUpper(k)+"="+v)
	}
	p := &gatewayProcess{t: t, addr: "127.0.0.1:" + strconv.Itoa(port), admin: "http://127.0.0.1:" + strconv.Itoa(admin),
		logs: &testserver.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("gateway process log:\n%s", p.logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if bs, err := p.backends(); err == nil {
			up := 0
			for _, b := range bs {
				if b.Connected {
					up++
				}
			}
			if up >= wantUp {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("gateway process exited: %v\n%s", p.err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway process not ready after 15s:\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// backends reads /backends.
func (p *gatewayProcess) backends() ([]gateway.BackendStatus, error) {
	resp, err := http.Get(p.admin + "/backends")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var bs []gateway.BackendStatus
	return bs, json.NewDecoder(resp.Body).Decode(&bs)
}

// backend returns /backends' entry i, failing the test if it cannot be read.
func (p *gatewayProcess) backend(i int) gateway.BackendStatus {
	p.t.Helper()
	bs, err := p.backends()
	if err != nil || len(bs) <= i {
		p.t.Fatalf("/backends: %v %+v", err, bs)
	}
	return bs[i]
}

// kill ends the process with SIGKILL (idempotent).
func (p *gatewayProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM and returns the exit status.
func (p *gatewayProcess) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(20 * time.Second):
		p.t.Fatal("gateway process did not stop within 20s of SIGTERM")
		return nil
	}
}
