package gateway

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"net"

	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// Clients authenticate with the gateway as with Redis: requirepass is the default
// user's password, users adds named users (every user may run every command the
// gateway serves). Before AUTH, or HELLO with AUTH, every command but AUTH, HELLO and
// QUIT gets -NOAUTH. Passwords are compared in constant time and never logged.
//
// Toward backends, the gateway AUTHs every connection it opens (its pipelines, and
// the side connections of resyncs and verify rounds) with backend_username and
// backend_password, or a servers entry's own redis://user:pass@ credentials, before
// anything else; a refusal fails that connection with the backend's error.

// Redis's error texts.
const (
	errNoAuth    = "NOAUTH Authentication required."
	errWrongPass = "WRONGPASS invalid username-password pair or user is disabled."
	errNoPassSet = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errHelloAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
)

// authenticator checks client credentials.
type authenticator struct {
	requirePass string
	users       map[string]string
}

// required reports whether clients must authenticate.
func (a *authenticator) required() bool { return a.requirePass != "" || len(a.users) > 0 }

// check reports whether user (empty or "default": the default user) has password.
func (a *authenticator) check(user, password string) bool {
	want, ok := a.requirePass, a.requirePass != ""
	if user != "" && user != "default" {
		want, ok = a.users[user]
	} else if !ok {
		return true // the default user has no password: any is accepted, as Redis's nopass
	}
	return ok && subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1
}

// auth answers AUTH [user] password.
func (r *respCodec) auth(dst []byte, args [][]byte) []byte {
	a := &r.s.gw.auth
	var user, pass string
	switch len(args) {
	case 2:
		if a.requirePass == "" {
			return resp.AppendError(dst, errNoPassSet)
		}
		pass = string(args[1])
	case 3:
		user, pass = string(args[1]), string(args[2])
	default:
		return wrongArity(dst, "AUTH")
	}
	if !a.check(user, pass) {
		r.s.log.Warn("client authentication failed", "user", user) // never the password
		return resp.AppendError(dst, errWrongPass)
	}
	r.authed = true
	return resp.AppendOK(dst)
}

// backendAuth is the AUTH command for the backend at addr, or nil when it needs none.
func backendAuth(user, password string) []byte {
	if password == "" {
		return nil
	}
	args := [][]byte{[]byte("AUTH"), []byte(password)}
	if user != "" {
		args = [][]byte{[]byte("AUTH"), []byte(user), []byte(password)}
	}
	return resp.AppendCommand(nil, args)
}

// authenticate AUTHs a new connection to the backend when it has credentials; buf is
// reused and returned.
func (be *backend) authenticate(conn net.Conn, scan replyScanner, buf []byte) ([]byte, error) {
	if be.authCmd == nil {
		return buf, nil
	}
	reply, isErr, buf, err := be.roundTrip(conn, scan, be.authCmd, 0, buf)
	if err != nil {
		return buf, err
	}
	if isErr {
		return buf, fmt.Errorf("backend %s: AUTH refused: %s", be.addr, truncate(bytes.TrimPrefix(firstLine(reply), []byte("-")), 120))
	}
	return buf, nil
}
