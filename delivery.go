package herald

import (
	"crypto/sha256"
	"encoding/base32"
	"time"
)

// DeliveryID is the stable id of the delivery of event eventID (of cloud)
// to subscription subID: the webhook-id header, the same on every retry and
// on every replay of the event.
func DeliveryID(cloud, eventID, subID string) string {
	h := sha256.Sum256([]byte(cloud + "\x00" + eventID + "\x00" + subID))
	return "msg_" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:16])
}

// Delivery states.
const (
	// StatusPending: not yet delivered and not given up; NextAttemptAt says when.
	StatusPending = "pending"
	// StatusSucceeded: an attempt was answered 2xx.
	StatusSucceeded = "succeeded"
	// StatusFailed: the retry schedule gave up (or the delivery could not be
	// built); kept in the dead-letter log, and can be redelivered by hand.
	StatusFailed = "failed"
	// StatusSuperseded: an encoding-progress retry that was dropped because a
	// newer progress (or the encoding-complete) of the same encoding had
	// already reached the endpoint.
	StatusSuperseded = "superseded"
)

// ValidDeliveryStatus reports whether s names a delivery state.
func ValidDeliveryStatus(s string) bool {
	switch s {
	case StatusPending, StatusSucceeded, StatusFailed, StatusSuperseded:
		return true
	}
	return false
}

// MaxResponseExcerpt is how much of an endpoint's answer an attempt keeps.
const MaxResponseExcerpt = 1024

// Delivery is one (event, subscription) pair and every attempt made for it:
// the delivery log's record and the dead-letter log's.
type Delivery struct {
	ID             string `json:"id"` // the webhook-id header
	Cloud          string `json:"cloud"`
	SubscriptionID string `json:"subscription_id"`
	EventID        string `json:"event_id"`
	EventType      string `json:"event_type"`
	EventSequence  uint64 `json:"event_sequence"`

	Status        string     `json:"status"`
	Attempts      []Attempt  `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	// Reason says why a delivery failed or was superseded, in a sentence.
	Reason string `json:"reason,omitempty"`

	// ScheduleStart is when the current retry schedule began: the first
	// attempt, or the last redelivery by hand. The exponential window runs
	// from here.
	ScheduleStart time.Time `json:"schedule_start"`
	// ScheduleBase is how many attempts came before the current schedule:
	// attempt number n is schedule position n - ScheduleBase.
	ScheduleBase int `json:"schedule_base,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Attempt is one HTTP request of a delivery.
type Attempt struct {
	Number     int       `json:"number"` // 1 for the first
	At         time.Time `json:"at"`
	DurationMS float64   `json:"duration_ms"`
	StatusCode int       `json:"status_code,omitempty"` // 0: no answer
	Error      string    `json:"error,omitempty"`
	// Response is the start of the endpoint's answer (MaxResponseExcerpt bytes).
	Response string `json:"response,omitempty"`
}

// Succeeded reports whether the attempt was answered 2xx.
func (a Attempt) Succeeded() bool { return a.StatusCode >= 200 && a.StatusCode < 300 }

// DeliveryFilter selects deliveries of a cloud to list.
type DeliveryFilter struct {
	SubscriptionID string
	Status         string // one of the Status constants, or "" for all
	Limit          int    // 1 to MaxDeliveryPage; 0 means 50
	Cursor         string // from the previous page; "" starts at the oldest
}

// MaxDeliveryPage bounds one page of the delivery log.
const MaxDeliveryPage = 500

// DeliveryPage is one page of the delivery log, least recently changed
// first. Cursor continues it and is empty on the last page.
type DeliveryPage struct {
	Deliveries []Delivery `json:"data"`
	Cursor     string     `json:"next_cursor,omitempty"`
}
