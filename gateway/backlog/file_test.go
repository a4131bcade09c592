package backlog

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestAppendRecordsRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.log")
	for _, mode := range []Fsync{FsyncAlways, FsyncEverySec, FsyncNo} {
		_ = os.Remove(path)
		l, err := Open(path, mode)
		if err != nil {
			t.Fatal(err)
		}
		want := []Record{
			{Seq: 1, Kinds: []byte{0}, Frames: []byte("*1\r\n$4\r\nPING\r\n")},
			{Seq: 2, Kinds: []byte{0, 0}, Frames: []byte("*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n")},
			{Seq: 9, Kinds: []byte{}, Frames: []byte{}},
		}
		for _, r := range want {
			if err := l.Append(r); err != nil {
				t.Fatal(err)
			}
		}
		got, torn, err := l.Records()
		if err != nil || torn || !reflect.DeepEqual(got, want) {
			t.Fatalf("fsync %d: records %+v torn %v err %v", mode, got, torn, err)
		}
		if err := l.Rewrite(want[1:2]); err != nil {
			t.Fatal(err)
		}
		if err := l.Append(want[0]); err != nil {
			t.Fatal(err)
		}
		if got, _, _ := l.Records(); !reflect.DeepEqual(got, []Record{want[1], want[0]}) {
			t.Fatalf("after Rewrite and Append: %+v", got)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, _ = Open(path, mode) // reopened: the records are still there
		if got, _, _ := l.Records(); len(got) != 2 {
			t.Fatalf("reopened: %d records", len(got))
		}
		if err := l.Rewrite(nil); err != nil || l.Size() != 0 {
			t.Fatalf("emptied: size %d, %v", l.Size(), err)
		}
		_ = l.Close()
	}
}

// TestReadFrom reads a log in chunks while it is appended to.
func TestReadFrom(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "s.log"), FsyncNo)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 10 {
		_ = l.Append(Record{Seq: uint64(i), Kinds: []byte{0}, Frames: []byte("0123456789")})
	}
	var got []Record
	off, appended := int64(0), false
	for {
		recs, next, err := l.ReadFrom(off, 25)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		if len(recs) > 3 {
			t.Fatalf("chunk of %d records for 25 bytes", len(recs))
		}
		got, off = append(got, recs...), next
		if len(got) >= 5 && !appended {
			_ = l.Append(Record{Seq: 10, Kinds: []byte{0}, Frames: []byte("appended")})
			appended = true
		}
	}
	if len(got) != 11 || got[10].Seq != 10 || off != l.Size() {
		t.Fatalf("read %d records to offset %d of %d", len(got), off, l.Size())
	}
}

// TestTornTail: a record cut short (the process stopped mid-write) ends the list; the
// complete records before it are kept.
func TestTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.log")
	l, err := Open(path, FsyncNo)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_ = l.Append(Record{Seq: 1, Kinds: []byte{0}, Frames: []byte("one")})
	_ = l.Append(Record{Seq: 2, Kinds: []byte{0}, Frames: []byte("two")})
	st, _ := os.Stat(path)
	if err := os.Truncate(path, st.Size()-2); err != nil {
		t.Fatal(err)
	}
	got, torn, err := l.Records()
	if err != nil || !torn || len(got) != 1 || string(got[0].Frames) != "one" {
		t.Fatalf("torn tail: %+v torn %v err %v", got, torn, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(nil, Record{Seq: 5, Kinds: []byte{1, 2}, Frames: []byte("xy")})[headerSize:])
	f.Fuzz(func(t *testing.T, p []byte) {
		r, ok := decode(p)
		if ok && len(r.Kinds)+len(r.Frames) > len(p) {
			t.Fatal("decoded more than the input")
		}
	})
}
