package discovery

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// File reads backends from a file, one "host:port" a line ("#" starts a comment),
// and watches it: editors that write a new file and rename it over the old one
// included (the directory is watched, not the file).
type File struct {
	Path string
}

// Name is "file".
func (f *File) Name() string { return "file" }

// Refresh is 0: the file is watched instead.
func (f *File) Refresh() time.Duration { return 0 }

// Fetch reads the file now.
func (f *File) Fetch(context.Context) ([]string, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, fmt.Errorf("file %s: %w", f.Path, err)
	}
	list := cleanLines(string(data))
	if err := validate(list); err != nil {
		return nil, fmt.Errorf("file %s: %w", f.Path, err)
	}
	return list, nil
}

// Changed fires when the file is written, created, renamed or removed.
func (f *File) Changed(ctx context.Context) (<-chan struct{}, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("file %s: watch: %w", f.Path, err)
	}
	dir, name := filepath.Split(filepath.Clean(f.Path))
	if dir == "" {
		dir = "."
	}
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("file %s: watch %s: %w", f.Path, dir, err)
	}
	out := make(chan struct{}, 1)
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Base(ev.Name) == name {
					select {
					case out <- struct{}{}:
					default:
					}
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	return out, nil
}
