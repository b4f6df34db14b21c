package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/herald-webhooks/herald"
)

// Error kinds of the HTTP layer itself, beside herald's. A *clientError
// wraps one with a message the client may read.
var (
	errBadRequest       = errors.New("bad request")
	errForbidden        = errors.New("forbidden")
	errMethodNotAllowed = errors.New("method not allowed")
	errTooLarge         = errors.New("request body too large")
	errTooMany          = errors.New("too many requests")
)

// clientError is an HTTP-layer error with a message meant for the client.
type clientError struct {
	kind error
	msg  string
}

func (e *clientError) Error() string { return e.msg }
func (e *clientError) Unwrap() error { return e.kind }

func badRequest(msg string) error { return &clientError{kind: errBadRequest, msg: msg} }
func forbidden(msg string) error  { return &clientError{kind: errForbidden, msg: msg} }
func tooLarge(msg string) error   { return &clientError{kind: errTooLarge, msg: msg} }

func tooManyRequests(msg string) error { return &clientError{kind: errTooMany, msg: msg} }

// errorBody is every error answer: {"error": "...", "field": "..."}.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// Messages of the fixed answers. Every 404 has the same body, so that an
// object of another cloud, a missing object and an unknown path cannot be
// told apart.
const (
	msgNotFound     = "not found"
	msgUnauthorized = "missing or invalid bearer token"
	msgInternal     = "internal error"
)

// errorStatus maps an error to its status code and body. It is the one
// place that does so; handlers only return errors.
func errorStatus(err error) (int, errorBody) {
	var ve *herald.ValidationError
	var conflict *herald.ConflictError
	var unavailable *herald.UnavailableError
	var ce *clientError
	switch {
	case errors.As(err, &ve):
		return http.StatusUnprocessableEntity, errorBody{Error: ve.Message, Field: ve.Field}
	case errors.Is(err, herald.ErrNotFound):
		return http.StatusNotFound, errorBody{Error: msgNotFound}
	case errors.Is(err, herald.ErrUnauthorized):
		return http.StatusUnauthorized, errorBody{Error: msgUnauthorized}
	case errors.As(err, &conflict):
		return http.StatusConflict, errorBody{Error: conflict.Reason}
	case errors.Is(err, herald.ErrConflict):
		return http.StatusConflict, errorBody{Error: "the object changed meanwhile or is in use; fetch it and try again"}
	case errors.As(err, &unavailable):
		return http.StatusServiceUnavailable, errorBody{Error: unavailable.Reason}
	case errors.Is(err, herald.ErrUnavailable):
		return http.StatusServiceUnavailable, errorBody{Error: "storage is unavailable; try again later"}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, errorBody{Error: "the request timed out or was cancelled; try again"}
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed, errorBody{Error: "method not allowed"}
	case errors.As(err, &ce) && errors.Is(ce.kind, errBadRequest):
		return http.StatusBadRequest, errorBody{Error: ce.msg}
	case errors.As(err, &ce) && errors.Is(ce.kind, errForbidden):
		return http.StatusForbidden, errorBody{Error: ce.msg}
	case errors.As(err, &ce) && errors.Is(ce.kind, errTooLarge):
		return http.StatusRequestEntityTooLarge, errorBody{Error: ce.msg}
	case errors.As(err, &ce) && errors.Is(ce.kind, errTooMany):
		return http.StatusTooManyRequests, errorBody{Error: ce.msg}
	default:
		return http.StatusInternalServerError, errorBody{Error: msgInternal}
	}
}

// fail answers r with err. A 500 hides the real error from the client and
// logs it at error level with the method and route, never the body.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, body := errorStatus(err)
	switch status {
	case http.StatusInternalServerError:
		a.log.Error().Err(err).Str("method", r.Method).Str("route", routeOf(r)).Msg("request failed")
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	_ = a.writeJSON(w, r, status, body) // an errorBody always encodes
}
