package backlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Fsync is when appended records are flushed to stable storage. A record is always
// written to the file (the kernel) before Append returns, so a killed gateway loses
// nothing; Fsync only matters when the machine itself stops.
type Fsync int

const (
	// FsyncEverySec flushes once a second when something was appended (the default,
	// as Redis's appendfsync everysec).
	FsyncEverySec Fsync = iota
	// FsyncAlways flushes before every Append returns.
	FsyncAlways
	// FsyncNo leaves flushing to the operating system.
	FsyncNo
)

// ParseFsync reads backlog_fsync: always, everysec or no.
func ParseFsync(s string) (Fsync, error) {
	switch s {
	case "always":
		return FsyncAlways, nil
	case "everysec":
		return FsyncEverySec, nil
	case "no":
		return FsyncNo, nil
	}
	return 0, fmt.Errorf("backlog_fsync %q: not always, everysec or no", s)
}

// Record is a run of queued commands: Seq is the queue position of the first, Kinds
// holds one reply kind per command, Frames their bytes in order.
type Record struct {
	Seq    uint64
	Kinds  []byte
	Frames []byte
}

// header is each record's length and CRC-32 (Castagnoli) of its payload.
const headerSize = 8

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// File is a Log in one append-only file. It is safe for concurrent use.
type File struct {
	path  string
	fsync Fsync

	mu    sync.Mutex // guards everything below
	f     *os.File
	size  int64
	dirty bool // appended since the last fsync
	buf   []byte
	stop  chan struct{}
	done  chan struct{}
}

// Open opens (creating it if needed) the log at path, keeping its records.
func Open(path string, fsync Fsync) (*File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("backlog: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("backlog: %w", err)
	}
	l := &File{path: path, fsync: fsync, f: f, size: st.Size()}
	if fsync == FsyncEverySec {
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.syncEverySecond()
	}
	return l, nil
}

// Path is the file's path.
func (l *File) Path() string { return l.path }

// Size is the file's size in bytes.
func (l *File) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Append adds a record; it is in the file when Append returns (and on stable storage
// with FsyncAlways).
func (l *File) Append(r Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = encode(l.buf[:0], r)
	if _, err := l.f.Write(l.buf); err != nil {
		return fmt.Errorf("backlog %s: %w", l.path, err)
	}
	l.size += int64(len(l.buf))
	if cap(l.buf) > 1<<20 {
		l.buf = nil
	}
	if l.fsync == FsyncAlways {
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("backlog %s: fsync: %w", l.path, err)
		}
		return nil
	}
	l.dirty = true
	return nil
}

// Records reads every complete record, in file order. A torn or corrupt tail (a
// write cut short when the process or machine stopped) ends the list; torn reports
// whether there was one.
func (l *File) Records() (recs []Record, torn bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.Open(l.path)
	if err != nil {
		return nil, false, fmt.Errorf("backlog: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var hdr [headerSize]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return recs, false, nil
			}
			return recs, true, nil
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		if n > 1<<31 {
			return recs, true, nil
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return recs, true, nil
		}
		if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			return recs, true, nil
		}
		rec, ok := decode(payload)
		if !ok {
			return recs, true, nil
		}
		recs = append(recs, rec)
	}
}

// ReadFrom reads complete records from byte offset off, in file order, until about
// maxBytes of frames are read or the file ends, and returns the offset after them.
func (l *File) ReadFrom(off int64, maxBytes int) (recs []Record, next int64, err error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, off, fmt.Errorf("backlog: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(io.NewSectionReader(f, off, 1<<62), 64<<10)
	var hdr [headerSize]byte
	read := 0
	for read < maxBytes {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break // the end (a record being appended is read next time)
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			break
		}
		if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			return recs, off, fmt.Errorf("backlog %s: corrupt record at offset %d", l.path, off)
		}
		rec, ok := decode(payload)
		if !ok {
			return recs, off, fmt.Errorf("backlog %s: corrupt record at offset %d", l.path, off)
		}
		recs = append(recs, rec)
		off += headerSize + int64(n)
		read += len(rec.Frames)
	}
	return recs, off, nil
}

// Rewrite replaces the file's contents with recs (none: empties it), atomically: a
// new file is written, flushed and renamed over the old one.
func (l *File) Rewrite(recs []Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(recs) == 0 && l.size == 0 {
		return nil
	}
	tmp := l.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("backlog: %w", err)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	var size int64
	for _, r := range recs {
		l.buf = encode(l.buf[:0], r)
		size += int64(len(l.buf))
		if _, err := w.Write(l.buf); err != nil {
			_ = f.Close()
			return fmt.Errorf("backlog %s: %w", tmp, err)
		}
	}
	if err := errors.Join(w.Flush(), l.syncIfNeeded(f), f.Close()); err != nil {
		return fmt.Errorf("backlog %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return fmt.Errorf("backlog: %w", err)
	}
	if l.fsync != FsyncNo {
		syncDir(filepath.Dir(l.path))
	}
	nf, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("backlog: %w", err)
	}
	_ = l.f.Close()
	l.f, l.size, l.dirty = nf, size, false
	return nil
}

func (l *File) syncIfNeeded(f *os.File) error {
	if l.fsync == FsyncNo {
		return nil
	}
	return f.Sync()
}

// Sync flushes the file to stable storage.
func (l *File) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dirty = false
	return l.f.Sync()
}

// Close flushes (unless FsyncNo) and closes the file.
func (l *File) Close() error {
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	if l.fsync != FsyncNo {
		err = l.f.Sync()
	}
	return errors.Join(err, l.f.Close())
}

func (l *File) syncEverySecond() {
	defer close(l.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		if l.dirty {
			l.dirty = false
			_ = l.f.Sync()
		}
		l.mu.Unlock()
	}
}

// syncDir flushes a directory entry (a rename) to stable storage, where supported.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// encode appends r's header and payload: uvarint Seq, uvarint len(Kinds), Kinds,
// Frames.
func encode(dst []byte, r Record) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerSize)...)
	dst = binary.AppendUvarint(dst, r.Seq)
	dst = binary.AppendUvarint(dst, uint64(len(r.Kinds)))
	dst = append(dst, r.Kinds...)
	dst = append(dst, r.Frames...)
	payload := dst[start+headerSize:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, crcTable))
	return dst
}

func decode(p []byte) (Record, bool) {
	seq, n := binary.Uvarint(p)
	if n <= 0 {
		return Record{}, false
	}
	p = p[n:]
	k, n := binary.Uvarint(p)
	if n <= 0 || uint64(len(p)-n) < k {
		return Record{}, false
	}
	p = p[n:]
	return Record{Seq: seq, Kinds: p[:k:k], Frames: p[k:]}, true
}
