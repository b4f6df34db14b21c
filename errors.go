package herald

import (
	"errors"
	"fmt"
	"time"
)

// Error kinds. Callers test for them with errors.Is; the HTTP API maps each
// to one status code in one place.
var (
	// ErrNotFound: the object does not exist, or belongs to another cloud.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change collides with the current state (a concurrent
	// update, an object still in use).
	ErrConflict = errors.New("conflict")
	// ErrUnauthorized: no valid token was presented.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: a dependency (NATS, a stream) cannot be reached now;
	// the same call may succeed later.
	ErrUnavailable = errors.New("unavailable")
)

// ConflictError is an ErrConflict whose Reason is written for the user
// and safe to show them ("the delivery is pending; its next attempt is at
// …"). errors.Is(err, ErrConflict) holds for it.
type ConflictError struct{ Reason string }

func (e *ConflictError) Error() string { return "conflict: " + e.Reason }

// Unwrap makes a ConflictError an ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Conflict returns a *ConflictError with reason.
func Conflict(reason string) error { return &ConflictError{Reason: reason} }

// UnavailableError is an ErrUnavailable whose Reason is written for the
// user and safe to show them ("the events stream is full").
type UnavailableError struct{ Reason string }

func (e *UnavailableError) Error() string { return "unavailable: " + e.Reason }

// Unwrap makes an UnavailableError an ErrUnavailable.
func (e *UnavailableError) Unwrap() error { return ErrUnavailable }

// Unavailable returns an *UnavailableError with reason.
func Unavailable(reason string) error { return &UnavailableError{Reason: reason} }

// ValidationError says which field of an input is wrong and why. Field uses
// dots for nesting ("retry.initial_delay", "data.status") and is empty when
// the input as a whole is wrong.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Invalid returns a *ValidationError for field.
func Invalid(field, message string) error {
	return &ValidationError{Field: field, Message: message}
}

// DeliveryError is a failed delivery attempt. Status is the HTTP status the
// endpoint answered, or 0 when no answer came (refused, timed out, TLS).
// Retryable is false when retrying cannot help (the subscription is gone,
// the notification cannot be built). RetryAfter is the delay the endpoint
// asked for with a Retry-After header, if any.
type DeliveryError struct {
	Status     int
	Retryable  bool
	RetryAfter time.Duration
	Err        error
}

func (e *DeliveryError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("endpoint answered %d: %v", e.Status, e.Err)
	}
	return e.Err.Error()
}

func (e *DeliveryError) Unwrap() error { return e.Err }
