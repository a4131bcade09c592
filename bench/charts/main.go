// Command charts renders bench/run.sh's Redis results (bench/out/raw.tsv: one line
// per target, pipeline depth, test and round) as a PNG: median ops/s and the proxy's
// CPU microseconds per operation, for direct Redis, twemproxy and the gateway with
// 1, 2, 3 and 10 backends, unpipelined and pipelined.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/dynode/dynode-broadcaster/internal/chart"
)

// key is one bar: a target at a pipeline depth for a test.
type key struct {
	target, pipeline, test string
}

func main() {
	in := flag.String("in", "bench/out/raw.tsv", "bench/run.sh's raw results")
	out := flag.String("out", "bench/redis.png", "PNG to write")
	flag.Parse()
	if err := render(*in, *out); err != nil {
		log.Fatalf("charts: %v", err)
	}
}

func render(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	ops, cpu := map[key][]float64{}, map[key][]float64{}
	var targets, pipelines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// target, -P, test, ops/s, proxy CPU us/op, redis CPU us/op [, p50, p95, p99
		// [, CPUs busy %]]
		fields := strings.Split(sc.Text(), "\t")
		if n := len(fields); n != 6 && n != 9 && n != 10 {
			return fmt.Errorf("%s: line %q: want 6, 9 or 10 fields", in, sc.Text())
		}
		k := key{fields[0], fields[1], strings.ToUpper(fields[2])}
		rps, err1 := strconv.ParseFloat(fields[3], 64)
		us, err2 := strconv.ParseFloat(fields[4], 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%s: line %q: not numbers", in, sc.Text())
		}
		ops[k], cpu[k] = append(ops[k], rps), append(cpu[k], us)
		if !slices.Contains(targets, k.target) {
			targets = append(targets, k.target)
		}
		if !slices.Contains(pipelines, k.pipeline) {
			pipelines = append(pipelines, k.pipeline)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	tests := []string{"SET", "GET"}
	var panels []chart.BarPanel
	for _, p := range pipelines {
		panel := chart.BarPanel{Title: "ops/s, redis-benchmark -P " + p, YLabel: "ops/s", Groups: tests}
		for i, t := range targets {
			panel.Series = append(panel.Series, chart.BarSeries{Name: t, Values: medians(ops, t, p, tests), Color: i})
		}
		panels = append(panels, panel)
	}
	for _, p := range pipelines {
		panel := chart.BarPanel{Title: "proxy CPU per operation, -P " + p, YLabel: "microseconds", Groups: tests}
		for i, t := range targets {
			if strings.Contains(t, "direct") {
				continue // no proxy
			}
			panel.Series = append(panel.Series, chart.BarSeries{Name: t, Values: medians(cpu, t, p, tests), Color: i})
		}
		panels = append(panels, panel)
	}
	return chart.Bars(out, len(pipelines), panels)
}

func medians(m map[key][]float64, target, pipeline string, tests []string) []float64 {
	out := make([]float64, len(tests))
	for i, t := range tests {
		v := slices.Clone(m[key{target, pipeline, t}])
		slices.Sort(v)
		if n := len(v); n > 0 {
			out[i] = v[n/2]
		}
	}
	return out
}
