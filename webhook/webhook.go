// Package webhook builds and verifies what an endpoint receives: notification
// bodies in the two formats (form data in bracket notation, and flat JSON),
// and Standard Webhooks signatures (https://www.standardwebhooks.com).
//
// Everything here is a pure function of its inputs: no I/O, no clock, no
// logging. The dispatcher builds a body with AppendForm or AppendJSON and
// signs it with Secret.Sign; `herald listen` and receivers written in Go
// check a request with Verify.
package webhook

// Header names of a notification (SPEC §3). HTTP treats them
// case-insensitively; these are the spellings herald sends.
const (
	// HeaderID carries the delivery's id, the same on every retry.
	HeaderID = "webhook-id"
	// HeaderTimestamp carries the attempt's time in Unix seconds.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature carries one or more space-separated "v1,<base64>"
	// signatures.
	HeaderSignature = "webhook-signature"
	// HeaderEvent carries the event type.
	HeaderEvent = "herald-event"
	// HeaderAttempt carries the attempt number: 1 on the first try.
	HeaderAttempt = "herald-attempt"
	// HeaderSequence carries the event's JetStream stream sequence.
	HeaderSequence = "herald-sequence"
)

// Content types of the two body formats.
const (
	ContentTypeForm = "application/x-www-form-urlencoded"
	ContentTypeJSON = "application/json"
)

// MaxDepth bounds how deeply data may nest, counting data itself as level
// 1: {"a":{"b":1}} is 2 levels deep. Data of at most 32 levels gives form
// keys of at most 32 segments (a[b][c]…), which Rack's default
// param_depth_limit (32 since Rack 3, 100 before) and PHP's
// max_input_nesting_level (64) accept. Both formats apply the bound.
const MaxDepth = 32
