package resp

import (
	"strconv"

	"github.com/tidwall/redcon"
)

// AppendError appends a RESP error. msg is sent as is when it starts with an
// upper-case error code ("ERR", "NOPROTO"), else "ERR " is prefixed, as Redis does.
func AppendError(dst []byte, msg string) []byte { return redcon.AppendError(dst, msg) }

// AppendOK appends the simple string OK.
func AppendOK(dst []byte) []byte { return redcon.AppendOK(dst) }

// AppendSimple appends a simple string.
func AppendSimple(dst []byte, s string) []byte { return redcon.AppendString(dst, s) }

// AppendBulk appends a bulk string.
func AppendBulk(dst, b []byte) []byte { return redcon.AppendBulk(dst, b) }

// AppendBulkString appends a bulk string.
func AppendBulkString(dst []byte, s string) []byte { return redcon.AppendBulkString(dst, s) }

// AppendInt appends an integer reply.
func AppendInt(dst []byte, n int64) []byte { return redcon.AppendInt(dst, n) }

// AppendNull appends the RESP2 null bulk string.
func AppendNull(dst []byte) []byte { return redcon.AppendNull(dst) }

// AppendArray appends the header of an array of n elements.
func AppendArray(dst []byte, n int) []byte { return redcon.AppendArray(dst, n) }

// AppendSelect appends the command "SELECT db".
func AppendSelect(dst []byte, db int) []byte {
	var num [20]byte
	digits := strconv.AppendInt(num[:0], int64(db), 10)
	dst = append(dst, "*2\r\n$6\r\nSELECT\r\n"...)
	return redcon.AppendBulk(dst, digits)
}

// AppendCommandStrings appends a command made of args as a RESP array of bulks.
func AppendCommandStrings(dst []byte, args ...string) []byte {
	dst = redcon.AppendArray(dst, len(args))
	for _, a := range args {
		dst = redcon.AppendBulkString(dst, a)
	}
	return dst
}
