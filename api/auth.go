package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/herald-webhooks/herald"
)

// maxTokenLength bounds a bearer token; a longer one is refused before any
// lookup.
const maxTokenLength = 1024

// principal is who a request acts as: the admin, or the holder of one
// cloud's key.
type principal struct {
	admin bool
	cloud string // the key's cloud; empty for the admin
}

// cloudHandler serves a route under /v1/clouds/{cloud}/ once the caller may
// act on cloud, a valid cloud id.
type cloudHandler func(w http.ResponseWriter, r *http.Request, cloud string) error

// forCloud guards a route that the admin and the path cloud's own key may
// use. Any other cloud answers 404, the very answer of an object that does
// not exist, so a key learns nothing about clouds other than its own.
func (a *API) forCloud(h cloudHandler) http.Handler { return a.guard(false, h) }

// adminOnly guards a route that only the admin token may use.
//
// A cloud key gets 403 there, on its own cloud, on any other and on an
// invalid one alike: the route is admin-only for every caller, so the answer
// depends on the kind of token alone and says nothing about any cloud. (A
// 404 would claim the cloud is missing, which is not the reason.)
func (a *API) adminOnly(h cloudHandler) http.Handler { return a.guard(true, h) }

// guard authenticates r (401; 429 once the client address has failed too
// often), refuses a cloud key when adminOnly (403), checks the principal
// may act on the path's cloud (404, or 422 for the admin on an invalid
// cloud), then runs h. Every error goes to fail.
func (a *API) guard(adminOnly bool, h cloudHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cloud := r.PathValue("cloud")
		p, err := a.authenticate(r)
		if errors.Is(err, herald.ErrUnauthorized) {
			if ok, wait := a.limit.fail(clientKey(r.RemoteAddr)); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				err = tooManyRequests("too many failed authentication attempts from this address; try again later")
			}
		}
		if err == nil && adminOnly && !p.admin {
			err = forbidden("this route needs the admin token")
		}
		if err == nil {
			err = p.access(cloud)
		}
		if err == nil {
			err = h(w, r, cloud)
		}
		if err != nil {
			a.fail(w, r, err)
		}
	})
}

// authenticate finds who r acts as. A missing or malformed Authorization
// header or an unknown token is herald.ErrUnauthorized.
func (a *API) authenticate(r *http.Request) (principal, error) {
	token, ok := bearerToken(r.Header.Values("Authorization"))
	if !ok {
		return principal{}, herald.ErrUnauthorized
	}
	// Hashing first makes the comparison constant-time in the length too.
	sum := tokenSum(token)
	if subtle.ConstantTimeCompare(sum[:], a.admin[:]) == 1 {
		return principal{admin: true}, nil
	}
	cloud, err := a.keys.Authenticate(r.Context(), token)
	if err != nil {
		return principal{}, fmt.Errorf("authenticate cloud key: %w", err)
	}
	return principal{cloud: cloud}, nil
}

// access reports whether p may act on cloud, the path's cloud: the admin
// on any valid cloud (an invalid one is a 422 naming "cloud"), a key on its
// own cloud only (any other, valid or not, is herald.ErrNotFound).
func (p principal) access(cloud string) error {
	if !p.admin {
		if cloud != p.cloud || !herald.ValidCloud(cloud) {
			return herald.ErrNotFound
		}
		return nil
	}
	if !herald.ValidCloud(cloud) {
		return herald.Invalid("cloud", "must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	return nil
}

// bearerToken takes the token out of the Authorization header values: there
// must be exactly one, "Bearer <token>" (scheme in any case).
func bearerToken(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	if !validToken(token) {
		return "", false
	}
	return token, true
}

// validToken reports whether s can be a bearer token: 1–maxTokenLength
// visible ASCII characters.
func validToken(s string) bool {
	if s == "" || len(s) > maxTokenLength {
		return false
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

func tokenSum(token string) [32]byte { return sha256.Sum256([]byte(token)) }
