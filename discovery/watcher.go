package discovery

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Update is the effective backend list: the static servers and every source's last
// good list, merged, with the source that named each address first.
type Update struct {
	Servers []string
	Sources map[string]string // address -> "static", "http", "dns" or "file"
}

// Watcher runs sources and sends the effective list whenever it changes. A source
// that fails keeps its last good list in force; its error is reported once per
// change of error (not at every refresh), and again after it recovered.
type Watcher struct {
	Static  []string
	Sources []Source
	// OnError, when set, is told each new error of a source; OnRecover when a source
	// that failed answers again.
	OnError   func(source string, err error)
	OnRecover func(source string)

	mu    sync.Mutex // guards lists and sent
	lists [][]string // last good list per source; nil: none yet
	sent  []string
}

// Run fetches every source now and then as each one says, sending the effective list
// on out whenever it changes (the first time at once, even when no source answered),
// until ctx ends.
func (w *Watcher) Run(ctx context.Context, out chan<- Update) {
	w.mu.Lock()
	w.lists = make([][]string, len(w.Sources))
	w.mu.Unlock()
	var wg sync.WaitGroup
	for i, src := range w.Sources {
		wg.Go(func() { w.watch(ctx, i, src, out) })
	}
	if len(w.Sources) == 0 {
		w.emit(ctx, out, true)
	}
	wg.Wait()
}

// watch runs one source.
func (w *Watcher) watch(ctx context.Context, i int, src Source, out chan<- Update) {
	var changed <-chan struct{}
	if n, ok := src.(Notifier); ok {
		ch, err := n.Changed(ctx)
		if err != nil && w.OnError != nil {
			w.OnError(src.Name(), err)
		}
		changed = ch
	}
	var tick <-chan time.Time
	if every := src.Refresh(); every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	lastErr := ""
	first := true
	for {
		list, err := src.Fetch(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if err.Error() != lastErr && w.OnError != nil {
				w.OnError(src.Name(), err)
			}
			lastErr = err.Error()
		default:
			if lastErr != "" && w.OnRecover != nil {
				w.OnRecover(src.Name())
			}
			lastErr = ""
			w.mu.Lock()
			w.lists[i] = list
			w.mu.Unlock()
		}
		w.emit(ctx, out, first)
		first = false
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-changed:
			// An editor may write a file in several steps: let it settle.
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
	}
}

// emit sends the effective list if it changed (or force).
func (w *Watcher) emit(ctx context.Context, out chan<- Update, force bool) {
	w.mu.Lock()
	sources := map[string]string{}
	lists := [][]string{w.Static}
	for _, a := range w.Static {
		sources[a] = "static"
	}
	for i, l := range w.lists {
		lists = append(lists, l)
		for _, a := range l {
			if _, ok := sources[a]; !ok {
				sources[a] = w.Sources[i].Name()
			}
		}
	}
	merged := Merge(lists...)
	if !force && slices.Equal(merged, w.sent) {
		w.mu.Unlock()
		return
	}
	w.sent = merged
	w.mu.Unlock()
	select {
	case out <- Update{Servers: merged, Sources: sources}:
	case <-ctx.Done():
	}
}

// Resolve fetches every source once, for check-config --resolve: each source's list,
// or why it failed.
func Resolve(ctx context.Context, sources []Source) (lists map[string][]string, errs map[string]error) {
	lists, errs = map[string][]string{}, map[string]error{}
	for _, s := range sources {
		l, err := s.Fetch(ctx)
		if err != nil {
			errs[s.Name()] = err
			continue
		}
		lists[s.Name()] = l
	}
	return lists, errs
}
