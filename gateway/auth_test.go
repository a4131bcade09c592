package gateway_test

import (
	"strings"
	"testing"

	"github.com/dynode/dynode-broadcaster/internal/testserver"
	"github.com/redis/go-redis/v9"
)

// TestAuth: backends with requirepass are reached with backend_password or a
// redis://:pass@ servers entry; clients must AUTH with requirepass or a users entry
// (AUTH, HELLO 2 AUTH, go-redis Password/Username); before that every command gets
// NOAUTH and nothing is forwarded; wrong passwords get WRONGPASS; no password is
// ever logged.
func TestAuth(t *testing.T) {
	a := testserver.StartRedisWith(t, freePort(t), t.TempDir(), "--requirepass", "backend-a-pw")
	b := testserver.StartRedisWith(t, freePort(t), t.TempDir(), "--requirepass", "backend-b-pw")
	h := startGateway(t, []string{"redis://:backend-a-pw@" + a.Addr, b.Addr}, "backend_password=backend-b-pw",
		"requirepass=gateway-pw", "users=alice:alice-pw")
	h.backends = []*redisServer{a, b}

	anon := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2})
	defer anon.Close()
	if err := anon.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Fatalf("SET before AUTH: %v", err)
	}
	raw := exchange(t, h.addr, "GET k\r\nAUTH wrong\r\nAUTH alice nope\r\nHELLO 2\r\nAUTH gateway-pw\r\nSET k v1\r\nQUIT\r\n")
	for _, want := range []string{"-NOAUTH Authentication required.", "-WRONGPASS", "-NOAUTH HELLO must be called", "+OK\r\n+OK\r\n+OK"} {
		if !strings.Contains(raw, want) {
			t.Fatalf("raw session %q lacks %q", raw, want)
		}
	}
	c := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, Password: "gateway-pw"})
	defer c.Close()
	if err := c.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatalf("SET after AUTH: %v", err)
	}
	alice := redis.NewClient(&redis.Options{Addr: h.addr, Protocol: 2, Username: "alice", Password: "alice-pw"})
	defer alice.Close()
	if v, err := alice.Get(ctx, "k").Result(); err != nil || v != "v2" {
		t.Fatalf("GET as alice: %q %v", v, err)
	}
	if raw := exchange(t, h.addr, "HELLO 2 AUTH alice alice-pw SETNAME x\r\nGET k\r\n"); !strings.Contains(raw, "dynode-broadcaster") || !strings.HasSuffix(raw, "$2\r\nv2\r\n") {
		t.Fatalf("HELLO 2 AUTH: %q", raw)
	}
	h.converged(t)

	// Restarted empty, b is resynced from a: REPLICAOF needs a's password too.
	port := b.Port
	b.Stop()
	eventually(t, func() bool { return !h.gw.Backends()[1].Connected }, "b down")
	b = testserver.StartRedisWith(t, port, t.TempDir(), "--requirepass", "backend-b-pw")
	h.backends[1] = b
	eventually(t, func() bool {
		st := h.gw.Backends()[1]
		return st.State == "up" && st.Resync != nil && st.Resync.Step == "done"
	}, "b resynced")
	h.converged(t)
	for _, secret := range []string{"backend-a-pw", "backend-b-pw", "gateway-pw", "alice-pw", "nope", "wrong"} {
		if strings.Contains(h.logs.String(), secret) {
			t.Fatalf("the log shows a password (%s)", secret)
		}
	}
}

// TestBackendWrongPassword: a backend refusing the gateway's AUTH is not connected,
// and its error says so, without the password.
func TestBackendWrongPassword(t *testing.T) {
	a := testserver.StartRedisWith(t, freePort(t), t.TempDir(), "--requirepass", "right-pw")
	b := testserver.StartRedis(t)
	h := startGatewayPartial(t, []string{b.Addr, "redis://:not-the-pw@" + a.Addr}, 1)
	eventually(t, func() bool { return strings.Contains(h.logs.String(), "AUTH refused: WRONGPASS") }, "AUTH refusal logged")
	if st := h.gw.Backends()[1]; st.Connected || strings.Contains(h.logs.String(), "not-the-pw") {
		t.Fatalf("backend with a wrong password: %+v", st)
	}
}
