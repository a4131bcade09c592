package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dynode/dynode-broadcaster/gateway"
)

// runStatus prints the gateway's status as a table, once, or every second with
// watch (like redis-cli --stat) until ctx ends.
func runStatus(ctx context.Context, admin *adminClient, watch bool, stdout io.Writer) error {
	if !watch {
		st, err := fetchStatus(ctx, admin)
		if err != nil {
			return err
		}
		return writeStatus(stdout, st, time.Now())
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var b strings.Builder
		b.WriteString("\x1b[H\x1b[2J") // home, clear: redraw in place
		if st, err := fetchStatus(ctx, admin); err != nil {
			fmt.Fprintf(&b, "%s  %v (retrying every second)\n", time.Now().Format(time.TimeOnly), err)
		} else {
			_ = writeStatus(&b, st, time.Now())
		}
		if _, err := io.WriteString(stdout, b.String()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func fetchStatus(ctx context.Context, admin *adminClient) (gateway.Status, error) {
	var st gateway.Status
	code, err := admin.do(ctx, http.MethodGet, "/status", &st)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET %s/status: HTTP %d", admin.base, code)
	}
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	return st, nil
}

// writeStatus renders st: a summary of the gateway, then one row per backend.
func writeStatus(w io.Writer, st gateway.Status, now time.Time) error {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY: " + st.NotReady
	}
	fmt.Fprintf(w, "dynode-broadcaster %s  %s (%s)  up %s  %s  %s\n", st.Version, st.Listen, st.Protocol,
		(time.Duration(st.UptimeSeconds) * time.Second).String(), ready, now.Format(time.TimeOnly))
	fmt.Fprintf(w, "clients %d (%d idle)  ops/s %.0f  commands %d  divergences %d", st.Clients, st.Dormant, st.OpsPerSec, st.CommandsTotal, st.Divergences)
	for _, class := range []string{"write", "read"} {
		if q, ok := st.Latency[class]; ok && q.P99 > 0 {
			fmt.Fprintf(w, "  %s p50/p99 <= %g/%g ms", class, q.P50, q.P99)
		}
	}
	fmt.Fprint(w, "\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tROLE\tSTATE\tIN SYNC\tLAG CMDS\tLAG BYTES\tOPS/S\tDIVERGENCES\tLOST WRITES\tSINCE\tLAST ERROR")
	for _, b := range st.Backends {
		inSync := "yes"
		if b.OutOfSync {
			inSync = "NO: " + truncate(b.OutOfSyncReason, 40)
		}
		lastErr := "-"
		if b.LastError != "" {
			lastErr = fmt.Sprintf("%s (%s ago)", lastPart(b.LastError, 60), now.Sub(b.LastErrorAt).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%.0f\t%d\t%d\t%s\t%s\n", b.Addr, b.Role, b.State, inSync, b.LagCommands,
			b.QueuedBytes, b.OpsPerSec, b.Divergences, b.LostWrites, now.Sub(b.Since).Round(time.Second), lastErr)
	}
	if len(st.Backends) == 0 {
		fmt.Fprintln(tw, "(none: protocol=raw connects per client)")
	}
	return tw.Flush()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// lastPart keeps the end of an error, where wrapped errors say what happened.
func lastPart(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
