package gateway_test

import (
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Benchmarks: SET and GET through go-redis from parallel clients, direct to one
// redis-server versus through the gateway with 1 and 3 backends (bench/run.sh
// compares against twemproxy too). Run: go test -run X -bench . -benchmem ./gateway/
func BenchmarkDirect(b *testing.B) { benchClients(b, startRedisBackends(b, 1)[0].Addr) }

func BenchmarkGateway1(b *testing.B) { benchGateway(b, 1) }
func BenchmarkGateway3(b *testing.B) { benchGateway(b, 3) }

func benchGateway(b *testing.B, n int) {
	h := withRedis(b, n)
	benchClients(b, h.addr)
}

func benchClients(b *testing.B, addr string) {
	for _, payload := range []int{16, 1024} {
		value := make([]byte, payload)
		for _, op := range []string{"SET", "GET"} {
			b.Run(op+"/"+strconv.Itoa(payload)+"B", func(b *testing.B) {
				c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, PoolSize: 64})
				defer c.Close()
				c.Set(ctx, "bench", value, 0)
				b.SetParallelism(8)
				b.ReportAllocs()
				b.SetBytes(int64(payload))
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						var err error
						if op == "SET" {
							err = c.Set(ctx, "bench", value, 0).Err()
						} else {
							err = c.Get(ctx, "bench").Err()
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
