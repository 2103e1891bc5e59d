package httpstore

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// authRead lets a read through if the server is public or has no token,
// and otherwise wants the token. A presented wrong token is always refused.
func (h *Handler) authRead(w *respWriter, r *http.Request) bool {
	tok, present := bearer(r)
	switch {
	case present && h.opts.Token != "" && !h.tokenOK(tok):
		h.unauthorized(w, "wrong token")
		return false
	case present && h.opts.Token == "" && tok != "":
		return true // nothing to check against; reads are open
	case h.opts.Token == "" || h.opts.Public:
		return true
	case !present:
		h.unauthorized(w, "token required")
		return false
	}
	return true // present and right
}

// authWrite wants the token; with none configured, writes are refused.
func (h *Handler) authWrite(w *respWriter, r *http.Request) bool {
	tok, present := bearer(r)
	switch {
	case h.opts.Token == "":
		h.c.unauthorized.Add(1)
		h.fail(w, http.StatusForbidden, "writes disabled: the server has no token configured")
		return false
	case !present:
		h.unauthorized(w, "token required")
		return false
	case !h.tokenOK(tok):
		h.unauthorized(w, "wrong token")
		return false
	}
	return true
}

func (h *Handler) tokenOK(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], h.token[:]) == 1
}

// bearer returns the token of an "Authorization: Bearer" header and
// whether there was an Authorization header at all.
func bearer(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	if a == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(a, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true // present, but no bearer token: never right
	}
	return strings.TrimSpace(tok), true
}

func (h *Handler) unauthorized(w *respWriter, msg string) {
	h.c.unauthorized.Add(1)
	w.Header().Set("WWW-Authenticate", `Bearer realm="blockfs"`)
	h.fail(w, http.StatusUnauthorized, "%s", msg)
}
