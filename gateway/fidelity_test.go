package gateway_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/dynode/dynode-broadcaster/gateway"
	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
	"github.com/redis/go-redis/v9"
)

// fidelityBudget is how long a randomized fidelity test runs and how many commands
// it sends at most: FIDELITY_SECONDS (default 10) and FIDELITY_COMMANDS (100,000).
// FIDELITY_SEED replays a run.
func fidelityBudget(t *testing.T) (time.Duration, int64, uint64) {
	secs, cmds, seed := 10, int64(100_000), uint64(time.Now().UnixNano())
	if v, err := strconv.Atoi(os.Getenv("FIDELITY_SECONDS")); err == nil {
		secs = v
	}
	if v, err := strconv.ParseInt(os.Getenv("FIDELITY_COMMANDS"), 10, 64); err == nil {
		cmds = v
	}
	if v, err := strconv.ParseUint(os.Getenv("FIDELITY_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (FIDELITY_SEED=%d replays this run's commands; client interleaving still varies)", seed, seed)
	return time.Duration(secs) * time.Second, cmds, seed
}

// fidelityExcluded are write commands the test does not send, with why. Commands that
// set a relative expiry are drawn from templates only, with TTLs longer than the test:
// a key expiring while clients write to it is the documented expiry race (see README;
// TestAbsoluteTTL measures its window), not a divergence this test looks for.
var fidelityExcluded = map[string]string{
	"CONFIG|SET":     "changes server settings, not data (and could make a backend unusable)",
	"CONFIG|REWRITE": "writes the server's configuration file",
	"MIGRATE":        "moves keys to another server",
	"RESTORE-ASKING": "Redis Cluster only",
}

// redisGen draws commands: templates for the common writes, with arguments that make
// them collide on a small key space, and for every other write command of the table
// arguments drawn generically by its arity.
type redisGen struct {
	r       *rand.Rand
	generic []resp.CommandInfo
	dump    string // a DUMP payload for RESTORE
}

func (g *redisGen) key() string             { return "k" + strconv.Itoa(g.r.IntN(12)) }
func (g *redisGen) val() string             { return []string{"a", "b", "1", "2", "10", "x y", ""}[g.r.IntN(7)] }
func (g *redisGen) num() string             { return strconv.Itoa(g.r.IntN(21) - 5) }
func (g *redisGen) ttl() string             { return strconv.Itoa(300 + g.r.IntN(300)) } // no expiry during the test
func (g *redisGen) flt() string             { return strconv.FormatFloat(g.r.Float64()*10-3, 'f', 3, 64) }
func (g *redisGen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

func (g *redisGen) command() []any {
	k, k2 := g.key(), g.key()
	templates := []func() []any{
		func() []any { return []any{"SET", k, g.val()} },
		func() []any { return []any{"SET", k, g.val(), "EX", g.ttl(), g.pick("NX", "XX", "GET")} },
		func() []any { return []any{"SET", k, g.val(), "PX", g.ttl() + "000", g.pick("NX", "XX", "GET")} },
		func() []any { return []any{"SETEX", k, g.ttl(), g.val()} },
		func() []any { return []any{"SETRANGE", k, strconv.Itoa(g.r.IntN(50)), g.val()} },
		func() []any { return []any{"APPEND", k, g.val()} },
		func() []any { return []any{"INCRBY", k, g.num()} },
		func() []any { return []any{"INCRBYFLOAT", k, g.flt()} },
		func() []any { return []any{"GETDEL", k} },
		func() []any { return []any{"GETEX", k, "EX", g.ttl()} },
		func() []any { return []any{"MSET", k, g.val(), k2, g.val()} },
		func() []any { return []any{"DEL", k, k2} },
		func() []any { return []any{"EXPIRE", k, g.ttl(), g.pick("NX", "XX", "GT", "LT")} },
		func() []any { return []any{"PERSIST", k} },
		func() []any { return []any{"PEXPIRE", k, g.ttl() + "000"} },
		func() []any { return []any{"PSETEX", k, g.ttl() + "000", g.val()} },
		func() []any { return []any{"EXPIREAT", k, strconv.FormatInt(time.Now().Unix()+300, 10)} },
		func() []any { return []any{"PEXPIREAT", k, strconv.FormatInt(time.Now().UnixMilli()+300000, 10)} },
		func() []any { return []any{"RENAME", k, k2} },
		func() []any { return []any{"COPY", k, k2, "DB", strconv.Itoa(g.r.IntN(3)), "REPLACE"} },
		func() []any { return []any{"MOVE", k, strconv.Itoa(g.r.IntN(3))} },
		func() []any { return []any{"RPUSH", k, g.val(), g.val()} },
		func() []any { return []any{"LPOP", k, strconv.Itoa(1 + g.r.IntN(3))} },
		func() []any { return []any{"LMOVE", k, k2, g.pick("LEFT", "RIGHT"), g.pick("LEFT", "RIGHT")} },
		func() []any { return []any{"LINSERT", k, "BEFORE", g.val(), g.val()} },
		func() []any { return []any{"LTRIM", k, "0", strconv.Itoa(g.r.IntN(5))} },
		func() []any { return []any{"SADD", k, g.val(), g.val(), g.val()} },
		func() []any { return []any{"SPOP", k} },
		func() []any { return []any{"SPOP", k, strconv.Itoa(1 + g.r.IntN(3))} },
		func() []any { return []any{"SMOVE", k, k2, g.val()} },
		func() []any { return []any{"SUNIONSTORE", k, k2, g.key()} },
		func() []any { return []any{"HSET", k, g.val(), g.val()} },
		func() []any { return []any{"HINCRBYFLOAT", k, "f", g.flt()} },
		func() []any { return []any{"HDEL", k, g.val()} },
		func() []any { return []any{"ZADD", k, g.num(), g.val()} },
		func() []any { return []any{"ZINCRBY", k, g.flt(), g.val()} },
		func() []any { return []any{"ZPOPMIN", k} },
		func() []any { return []any{"ZUNIONSTORE", k, "2", k2, g.key()} },
		func() []any { return []any{"ZRANGESTORE", k, k2, "0", "-1"} },
		func() []any { return []any{"GEOADD", k, "13.36", "38.11", g.val()} },
		func() []any { return []any{"PFADD", k, g.val(), g.val()} },
		func() []any { return []any{"PFCOUNT", k} },
		func() []any { return []any{"PFMERGE", k, k2} },
		func() []any { return []any{"SETBIT", k, strconv.Itoa(g.r.IntN(100)), strconv.Itoa(g.r.IntN(2))} },
		func() []any { return []any{"BITFIELD", k, "INCRBY", "u8", strconv.Itoa(g.r.IntN(32)), g.num()} },
		func() []any { return []any{"BITOP", "OR", k, k2, g.key()} },
		func() []any { return []any{"SORT", k, "ALPHA", "STORE", k2} },
		func() []any { return []any{"XADD", "s" + k, "*", "f", g.val()} },
		func() []any {
			return []any{"XADD", "s" + k, "MAXLEN", "~", strconv.Itoa(g.r.IntN(20)), "*", "f", g.val()}
		},
		func() []any { return []any{"XTRIM", "s" + k, "MAXLEN", "~", strconv.Itoa(g.r.IntN(20))} },
		func() []any { return []any{"XGROUP", "CREATE", "s" + k, "g", "0", "MKSTREAM"} },
		func() []any { return []any{"XCLAIM", "s" + k, "g", "c", "0", "0-1", "FORCE", "JUSTID"} },
		func() []any { return []any{"XAUTOCLAIM", "s" + k, "g", "d", "0", "0", "COUNT", "5"} },
		func() []any { return []any{"XACK", "s" + k, "g", "0-1"} },
		func() []any { return []any{"RESTORE", k, "0", g.dump, "REPLACE"} },
		func() []any {
			return []any{"EVAL", "redis.call('INCR', KEYS[1]) return redis.call('RPUSH', KEYS[2], ARGV[1])", "2", k, k2, g.val()}
		},
	}
	if len(g.generic) == 0 || g.r.IntN(5) > 0 {
		return templates[g.r.IntN(len(templates))]()
	}
	c := g.generic[g.r.IntN(len(g.generic))]
	args := []any{}
	for _, part := range strings.Split(c.Name, "|") {
		args = append(args, part)
	}
	n := max(c.Arity, -c.Arity) - len(args)
	if c.Arity < 0 {
		n += g.r.IntN(3)
	}
	for range max(n, 0) {
		args = append(args, []func() string{g.key, g.val, g.num, g.flt}[g.r.IntN(4)]())
	}
	return args
}

// TestRedisFidelity: 20 clients send random writes of every kind the table holds
// (templates for the common ones, generic arguments for the rest), some in MULTI
// blocks and some in other databases, on a small key space so they collide; at the
// end every backend holds the same data and every divergence is of a documented
// class (none is expected: TTLs are long enough that nothing expires meanwhile).
func TestRedisFidelity(t *testing.T) {
	budget, maxCmds, seed := fidelityBudget(t)
	h := withRedis(t, 3)
	setup := h.client(t, 0)
	setup.Set(ctx, "dumped", "v", 0)
	dump := setup.Dump(ctx, "dumped").Val()
	var generic []resp.CommandInfo
	templated := map[string]bool{}
	g0 := &redisGen{r: rand.New(rand.NewPCG(1, 2)), dump: dump}
	for range 2000 {
		templated[strings.ToUpper(fmt.Sprint(g0.command()[0]))] = true
	}
	for _, c := range resp.Commands() {
		if c.Class == protocols.Write && fidelityExcluded[c.Name] == "" && !templated[c.Name] {
			generic = append(generic, c)
		}
	}
	t.Logf("%d write commands drawn generically beside the templates", len(generic))
	var sent, errs atomic.Int64
	deadline := time.Now().Add(budget)
	clients := 20
	if v, err := strconv.Atoi(os.Getenv("FIDELITY_CLIENTS")); err == nil && v > 0 {
		clients = v // one client and a seed replay the exact same stream of commands
	}
	runClients(t, h, clients, func(w int, c *redis.Client) error {
		g := &redisGen{r: rand.New(rand.NewPCG(seed, uint64(w))), generic: generic, dump: dump}
		for time.Now().Before(deadline) && sent.Load() < maxCmds {
			switch g.r.IntN(20) {
			case 0:
				c.Do(ctx, "SELECT", g.r.IntN(3))
			case 1:
				_, _ = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
					for range 2 + g.r.IntN(3) {
						p.Do(ctx, g.command()...)
					}
					return nil
				})
				sent.Add(4)
			default:
				if err := c.Do(ctx, g.command()...).Err(); err != nil && err != redis.Nil {
					errs.Add(1)
				}
				sent.Add(1)
			}
		}
		return nil
	})
	h.converged(t)
	st := h.gw.Stats()
	t.Logf("%d commands, %d error replies; divergences: %d (error_text %d, missing_vs_present %d, other %d)",
		sent.Load(), errs.Load(), st.Divergences.Load(), st.DivergencesByClass[gateway.DivergenceErrorText].Load(),
		st.DivergencesByClass[gateway.DivergenceMissing].Load(), st.DivergencesByClass[gateway.DivergenceOther].Load())
	if n := st.Divergences.Load() - st.DivergencesByClass[gateway.DivergenceErrorText].Load(); n != 0 {
		t.Fatalf("%d divergences beyond error texts (seed %d); see the log", n, seed)
	}
	for _, b := range h.gw.Backends() {
		if b.OutOfSync {
			t.Fatalf("backend flagged (seed %d): %+v", seed, b)
		}
	}
}

// TestMemcacheFidelity: 20 clients send random storage, counter, touch, cas and meta
// commands on a small key space; at the end every backend holds the same items.
func TestMemcacheFidelity(t *testing.T) {
	budget, maxCmds, seed := fidelityBudget(t)
	h := withMemcached(t, 3)
	var sent atomic.Int64
	deadline := time.Now().Add(budget)
	runConcurrently(t, 20, func(w int) error {
		r := rand.New(rand.NewPCG(seed, uint64(w)))
		c := h.mcClient()
		m := dialMC(t, h.addr)
		for time.Now().Before(deadline) && sent.Load() < maxCmds {
			k := "k" + strconv.Itoa(r.IntN(12))
			v := []byte(strconv.Itoa(r.IntN(100)))
			flags := uint32(r.IntN(4))
			sent.Add(1)
			switch r.IntN(13) {
			case 0:
				_ = c.Set(&memcache.Item{Key: k, Value: v, Flags: flags, Expiration: int32(300 + r.IntN(300))})
			case 1:
				_ = c.Add(&memcache.Item{Key: k, Value: v, Flags: flags})
			case 2:
				_ = c.Replace(&memcache.Item{Key: k, Value: v, Flags: flags})
			case 3:
				_ = c.Append(&memcache.Item{Key: k, Value: v})
			case 4:
				_ = c.Prepend(&memcache.Item{Key: k, Value: v})
			case 5:
				if it, err := c.Get(k); err == nil {
					it.Value = v
					_ = c.CompareAndSwap(it)
				}
			case 6:
				_, _ = c.Increment(k, uint64(r.IntN(10)))
			case 7:
				_, _ = c.Decrement(k, uint64(r.IntN(10)))
			case 8:
				_ = c.Delete(k)
			case 9:
				_ = c.Touch(k, int32(300+r.IntN(300)))
			case 10:
				m.send(fmt.Sprintf("gat %d %s\r\n", 300+r.IntN(300), k))
				m.until("END")
			case 11:
				m.send(fmt.Sprintf("ms %s %d F%d T%d\r\n%s\r\nmn\r\n", k, len(v), flags, 300+r.IntN(300), v))
				m.until("MN")
			default:
				m.send(fmt.Sprintf("ma %s D%d\r\nmd %s q\r\nmn\r\n", k, r.IntN(5), "k"+strconv.Itoa(r.IntN(12))))
				m.until("MN")
			}
		}
		return nil
	})
	items := h.mcConverged(t)
	t.Logf("%d commands; %d items on every backend; divergences %d", sent.Load(), len(items), h.gw.Stats().Divergences.Load())
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, "replied differently") {
			t.Log(line)
		}
	}
	if n := h.gw.Stats().Divergences.Load(); n != 0 {
		t.Fatalf("%d divergences (seed %d)", n, seed)
	}
	for _, b := range h.gw.Backends() {
		if b.OutOfSync {
			t.Fatalf("backend flagged (seed %d): %+v", seed, b)
		}
	}
}
