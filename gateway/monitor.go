package gateway

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// MONITOR is answered by the gateway itself: it sees every command its clients send,
// so each monitor gets one line per command, in Redis's format
//
//	+1700000000.123456 [0 127.0.0.1:50000] "set" "k" "v"
//
// in the order the gateway decodes them (for writes, the order they are sequenced in
// within one client; across clients, within the few microseconds between decoding and
// sequencing). As in Redis, AUTH and HELLO ... AUTH are not shown with their
// passwords, and commands refused before running (unknown, wrong arity) are not shown.
// A monitor that leaves more than client_output_limit bytes unread is disconnected.
type monitors struct {
	n    atomic.Int32 // monitors connected: sessions check it before formatting anything
	mu   sync.Mutex   // guards list
	list []*output
}

func (m *monitors) add(o *output) {
	m.mu.Lock()
	m.list = append(m.list, o)
	m.n.Store(int32(len(m.list)))
	m.mu.Unlock()
}

func (m *monitors) remove(o *output) {
	m.mu.Lock()
	for i, x := range m.list {
		if x == o {
			m.list = append(m.list[:i], m.list[i+1:]...)
			break
		}
	}
	m.n.Store(int32(len(m.list)))
	m.mu.Unlock()
}

// publish sends lines to every monitor.
func (m *monitors) publish(lines []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.list {
		_ = o.push(lines) // a monitor over its limit is disconnected by push
	}
}

// appendMonitorLine appends one MONITOR line for a command.
func appendMonitorLine(dst []byte, now time.Time, db int, addr string, cmd protocols.Command) []byte {
	dst = append(dst, '+')
	dst = strconv.AppendInt(dst, now.Unix(), 10)
	dst = append(dst, '.')
	us := now.Nanosecond() / 1000
	for d := 100000; d > 1 && us < d; d /= 10 {
		dst = append(dst, '0')
	}
	dst = strconv.AppendInt(dst, int64(us), 10)
	dst = append(dst, " ["...)
	dst = strconv.AppendInt(dst, int64(db), 10)
	dst = append(dst, ' ')
	dst = append(dst, addr...)
	dst = append(dst, ']')
	args := cmd.Args
	redact := 0 // arguments shown as "(redacted)" from this index on
	switch cmd.Name {
	case "AUTH":
		redact = 1
	case "HELLO":
		for i := 2; i < len(args); i++ {
			if strings.EqualFold(string(args[i]), "AUTH") {
				redact = i + 1
				break
			}
		}
	case "MIGRATE":
		for i := 6; i < len(args); i++ {
			if strings.EqualFold(string(args[i]), "AUTH") || strings.EqualFold(string(args[i]), "AUTH2") {
				redact = i + 1
				break
			}
		}
	}
	for i, a := range args {
		dst = append(dst, ' ')
		if redact > 0 && i >= redact {
			dst = append(dst, `"(redacted)"`...)
			continue
		}
		dst = appendRepr(dst, a)
	}
	return append(dst, '\r', '\n')
}

// appendRepr quotes b as Redis's sdscatrepr does.
func appendRepr(dst, b []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range b {
		switch c {
		case '\\', '"':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\a':
			dst = append(dst, '\\', 'a')
		case '\b':
			dst = append(dst, '\\', 'b')
		default:
			if c >= 0x20 && c < 0x7f {
				dst = append(dst, c)
			} else {
				dst = append(dst, '\\', 'x', hex[c>>4], hex[c&15])
			}
		}
	}
	return append(dst, '"')
}
