package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/dynode/dynode-broadcaster/configuration"
	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

// configPath is where the image reads its configuration (Dockerfile, README).
const configPath = "/etc/dynode-broadcaster/dynode-broadcaster.properties"

// checkCompose loads a compose file with compose-go and returns every problem: the
// services must be the two-regions demo's, gateways built from the Dockerfile with
// a healthcheck through the binary, published ports, backends healthy before the
// gateways start (and gateways before the apps), and every mounted configuration
// file present and passing check-config, its servers naming services of the file.
func checkCompose(t *testing.T, path string) []string {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{path}, cli.WithWorkingDirectory(filepath.Dir(path)), cli.WithName("dynode"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var want []string
	for _, s := range twoRegionServices {
		want = append(want, s.name)
	}
	got := project.ServiceNames()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		fail("services %v, want the two-regions demo's %v", got, want)
	}
	for _, svc := range twoRegionServices {
		s, ok := project.Services[svc.name]
		if !ok {
			continue
		}
		if svc.kind != "app" && (s.HealthCheck == nil || len(s.HealthCheck.Test) == 0) {
			fail("%s: no healthcheck", svc.name)
		}
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				fail("%s: depends_on %s with condition %q, want service_healthy", svc.name, dep, d.Condition)
			}
		}
		switch svc.kind {
		case "app":
			gw := "broadcaster-" + strings.TrimPrefix(svc.name, "app-")
			if _, ok := s.DependsOn[gw]; !ok {
				fail("%s does not depend on %s", svc.name, gw)
			}
		case "gateway":
			if s.Build == nil || s.Build.Context != filepath.Dir(path) {
				fail("%s: not built from the repository's Dockerfile (build: %+v)", svc.name, s.Build)
			}
			if hc := strings.Join(s.HealthCheck.Test, " "); !strings.Contains(hc, "dynode-broadcaster health") {
				fail("%s: healthcheck %q does not ask the gateway's /healthz (dynode-broadcaster health)", svc.name, hc)
			}
			if len(s.Ports) == 0 {
				fail("%s: no published port", svc.name)
			}
			var mounted string
			for _, v := range s.Volumes {
				if v.Target == configPath {
					mounted = v.Source
				}
			}
			if mounted == "" {
				fail("%s: no configuration file mounted at %s", svc.name, configPath)
				continue
			}
			if filepath.Base(mounted) != svc.config {
				fail("%s: mounts %s, the demo runs it from %s", svc.name, mounted, svc.config)
			}
			problems = append(problems, checkGatewayConfig(svc.name, mounted, project)...)
		}
	}
	return problems
}

// checkGatewayConfig runs check-config on a mounted file and checks its servers are
// services of the project, and that the port it listens on is published.
func checkGatewayConfig(service, file string, project *types.Project) []string {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check-config", "-c", file}, &out, &out); err != nil {
		return []string{fmt.Sprintf("%s: check-config %s: %v", service, file, err)}
	}
	cfg, err := configuration.Load(configuration.Sources{Path: file})
	if err != nil {
		return []string{fmt.Sprintf("%s: %s: %v", service, file, err)}
	}
	var problems []string
	for _, s := range cfg.Servers {
		host, _, _ := net.SplitHostPort(s)
		if _, ok := project.Services[host]; !ok {
			problems = append(problems, fmt.Sprintf("%s: %s: servers entry %s is not a service of the compose file", service, file, s))
		}
	}
	published := false
	for _, p := range project.Services[service].Ports {
		published = published || int(p.Target) == cfg.Port
	}
	if !published {
		problems = append(problems, fmt.Sprintf("%s: %s: port %d is not published", service, file, cfg.Port))
	}
	if cfg.AdminPort == 0 {
		problems = append(problems, fmt.Sprintf("%s: %s: admin_port=0: the healthcheck needs the admin server", service, file))
	}
	return problems
}

// TestComposeFile checks docker-compose.yml (no Docker engine runs here).
func TestComposeFile(t *testing.T) {
	for _, p := range checkCompose(t, mustAbs(t, "../../docker-compose.yml")) {
		t.Error(p)
	}
}

// TestComposeBadConfig: a compose file whose mounted configuration fails
// check-config fails the check, naming the file and the key.
func TestComposeBadConfig(t *testing.T) {
	dir := t.TempDir()
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "docker-compose.yml"), compose, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "deploy", "compose"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range twoRegionServices {
		if s.config == "" {
			continue
		}
		text, err := os.ReadFile(filepath.Join("../../deploy/compose", s.config))
		if err != nil {
			t.Fatal(err)
		}
		if s.name == "broadcaster-eu" {
			text = append(text, "write_reply=sometimes\n"...)
		}
		if err := os.WriteFile(filepath.Join(dir, "deploy", "compose", s.config), text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	problems := checkCompose(t, filepath.Join(dir, "docker-compose.yml"))
	if len(problems) != 1 || !strings.Contains(problems[0], "broadcaster-eu.properties") || !strings.Contains(problems[0], "write_reply") {
		t.Fatalf("problems %q, want one naming broadcaster-eu.properties and write_reply", problems)
	}
}

// TestDockerfile checks what the image promises: a multi-stage build of a static
// binary with -trimpath on the Go of go.mod, a non-root user, a HEALTHCHECK through
// /healthz and the configuration at its documented path; and that the build
// command it runs makes a static binary here.
func TestDockerfile(t *testing.T) {
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)[1]
	for _, want := range []string{
		"FROM golang:" + string(goVersion) + "-bookworm AS build",
		"CGO_ENABLED=0 go build -trimpath",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER nonroot",
		`HEALTHCHECK`, `"health", "-c", "` + configPath + `"`,
		`CMD ["-c", "` + configPath + `"]`,
		"COPY deploy/dynode-broadcaster.properties " + configPath,
	} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check-config", "-c", "../../deploy/dynode-broadcaster.properties"}, &out, &out); err != nil {
		t.Fatalf("the image's default configuration: %v", err)
	}
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestTwoRegionsDemo runs docker-compose.yml's services as local processes (demo
// --topology two-regions): a write through broadcaster-us is in redis-eu, one
// through broadcaster-eu in redis-us, the apps see each other's writes, and the
// memcached pair gets every set.
func TestTwoRegionsDemo(t *testing.T) {
	testserver.Require(t, "redis-server", "redis-server")
	testserver.Require(t, "memcached", "memcached")
	out, _ := background(t, "demo", "--topology", "two-regions", "--compose-dir", "../../deploy/compose", "--log_level", "ERROR")
	addr := map[string]string{}
	line := regexp.MustCompile(`(?m)^(\S+)\s+(127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(15 * time.Second); len(addr) < 7; time.Sleep(50 * time.Millisecond) {
		for _, m := range line.FindAllStringSubmatch(out.String(), -1) {
			addr[m[1]] = m[2]
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not start its 7 servers:\n%s", out.String())
		}
	}
	client := func(name string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: addr[name], Protocol: 2})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	bctx := context.Background()
	if err := client("broadcaster-us").Set(bctx, "written:in:us", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client("broadcaster-eu").Set(bctx, "written:in:eu", "2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v := client("redis-eu").Get(bctx, "written:in:us").Val(); v != "1" {
		t.Fatalf("a write through broadcaster-us is %q in redis-eu", v)
	}
	if v := client("redis-us").Get(bctx, "written:in:eu").Val(); v != "2" {
		t.Fatalf("a write through broadcaster-eu is %q in redis-us", v)
	}
	sees := regexp.MustCompile(`app-us wrote .* reads region:eu:counter=[1-9]`)
	for deadline := time.Now().Add(10 * time.Second); !sees.MatchString(out.String()); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("app-us never read app-eu's writes from redis-us:\n%s", out.String())
		}
	}
	mc, err := net.Dial("tcp", addr["broadcaster-mc"])
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if _, err := mc.Write([]byte("set both 0 0 2\r\nok\r\n")); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 8)
	if n, _ := mc.Read(reply); string(reply[:n]) != "STORED\r\n" {
		t.Fatalf("set through broadcaster-mc: %q", reply[:n])
	}
	get := func(name string) string {
		c, err := net.Dial("tcp", addr[name])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("get both\r\n"))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		return string(buf[:n])
	}
	for _, name := range []string{"memcached-a", "memcached-b"} {
		// The reply came from the primary; the other applies the set a moment later.
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(get(name), "VALUE both 0 2\r\nok"); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: get both = %q", name, get(name))
			}
		}
	}
}
