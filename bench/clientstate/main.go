// Command clientstate measures two client-state workloads against one Redis-protocol
// address, for bench/clientstate.sh: a job queue (producers RPUSH, workers BLPOP) and
// PUBLISH fan-out (one publisher, several subscribers). It prints one tab-separated
// line: queue jobs/s, fan-out messages delivered/s.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "Redis-protocol address")
	jobs := flag.Int("jobs", 50000, "jobs through the queue")
	producers := flag.Int("producers", 5, "queue producers")
	workers := flag.Int("workers", 20, "queue workers (BLPOP)")
	messages := flag.Int("messages", 20000, "messages published")
	subscribers := flag.Int("subscribers", 10, "subscribers")
	flag.Parse()
	ctx := context.Background()
	queue := queueRate(ctx, *addr, *jobs, *producers, *workers)
	fanout := fanoutRate(ctx, *addr, *messages, *subscribers)
	fmt.Printf("%.0f\t%.0f\n", queue, fanout)
}

// queueRate returns jobs per second through RPUSH and BLPOP.
func queueRate(ctx context.Context, addr string, jobs, producers, workers int) float64 {
	var taken atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
			defer c.Close()
			for taken.Load() < int64(jobs) {
				if _, err := c.BLPop(ctx, time.Second, "bench:queue").Result(); err == nil {
					taken.Add(1)
				}
			}
		})
	}
	for p := range producers {
		wg.Go(func() {
			c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
			defer c.Close()
			for i := range jobs / producers {
				if err := c.RPush(ctx, "bench:queue", fmt.Sprint(p, ":", i)).Err(); err != nil {
					log.Fatal(err)
				}
			}
		})
	}
	wg.Wait()
	return float64(jobs) / time.Since(start).Seconds()
}

// fanoutRate returns messages delivered per second (messages x subscribers).
func fanoutRate(ctx context.Context, addr string, messages, subscribers int) float64 {
	var wg sync.WaitGroup
	ready := make(chan struct{}, subscribers)
	for range subscribers {
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
		ps := c.Subscribe(ctx, "bench:fanout")
		if _, err := ps.Receive(ctx); err != nil {
			log.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close()
			defer ps.Close()
			ready <- struct{}{}
			ch := ps.Channel(redis.WithChannelSize(messages))
			for range messages {
				<-ch
			}
		})
	}
	for range subscribers {
		<-ready
	}
	pub := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer pub.Close()
	start := time.Now()
	p := pub.Pipeline()
	for i := range messages {
		p.Publish(ctx, "bench:fanout", i)
		if i%100 == 99 {
			if _, err := p.Exec(ctx); err != nil {
				log.Fatal(err)
			}
		}
	}
	if _, err := p.Exec(ctx); err != nil && err != redis.Nil {
		log.Fatal(err)
	}
	wg.Wait()
	return float64(messages*subscribers) / time.Since(start).Seconds()
}
