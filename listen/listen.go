// Package listen is the receiver behind `herald listen` (SPEC §6): an
// http.Handler for local development that prints every notification it
// receives, readably, and answers with a chosen status. It can fail a
// fraction of requests to rehearse retries, and check signatures when it
// is given the subscription's secrets.
//
// Each request prints as one header line (time, method, path, the status
// answered, the herald headers, the signature verdict) followed by the
// body, indented: JSON pretty-printed, form data decoded from bracket
// notation into nested objects and arrays shown as JSON, anything else as
// text.
package listen

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/herald-webhooks/herald"
	"github.com/herald-webhooks/herald/webhook"
)

// MaxBodySize bounds the body of a request (1 MiB); a larger one is
// answered 413 and not printed.
const MaxBodySize = 1 << 20

// Config sets up a Handler. The zero value answers 200 to everything,
// checks no signature and prints to standard output.
type Config struct {
	// Status is the status to answer: 200 when 0, else 200–599.
	Status int
	// FailRate, from 0 to 1, is the fraction of requests answered 500
	// instead, picked at random, to rehearse retries.
	FailRate float64
	// Secrets, when set, are checked against each request's signature
	// (any may match); the verdict is printed, not enforced: the answer
	// is the same either way.
	Secrets []webhook.Secret
	// Out is where notifications are printed; os.Stdout when nil. Each
	// request's lines reach it in a single Write.
	Out io.Writer
	// Now is the clock for the printed time and the signature's timestamp
	// check; time.Now when nil.
	Now func() time.Time
}

// Validate checks the status and the fail rate.
func (c Config) Validate() error {
	if c.Status != 0 && (c.Status < 200 || c.Status > 599) {
		return herald.Invalid("status", "must be an HTTP status from 200 to 599")
	}
	if !(c.FailRate >= 0 && c.FailRate <= 1) { // also refuses NaN
		return herald.Invalid("fail-rate", "must be between 0 and 1")
	}
	return nil
}

// Handler returns the http.Handler that prints each notification to
// cfg.Out and answers it. It is safe for concurrent requests: their output
// never interleaves. Handler panics if cfg is not valid; check it with
// Validate first.
func Handler(cfg Config) http.Handler {
	if err := cfg.Validate(); err != nil {
		panic("listen: " + err.Error())
	}
	if cfg.Status == 0 {
		cfg.Status = http.StatusOK
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &handler{cfg: cfg}
}

type handler struct {
	cfg Config
	mu  sync.Mutex // serializes writes to cfg.Out
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.cfg.Now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodySize))
	status, why := h.cfg.Status, ""
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		status, why = http.StatusRequestEntityTooLarge, "body over 1 MiB"
	case err != nil:
		status, why = http.StatusBadRequest, "reading the body: "+err.Error()
	case h.cfg.FailRate > 0 && rand.Float64() < h.cfg.FailRate:
		status, why = http.StatusInternalServerError, "fail-rate"
	}

	var b bytes.Buffer
	b.WriteString(now.Format("2006-01-02 15:04:05.000"))
	b.WriteByte(' ')
	b.WriteString(r.Method)
	b.WriteByte(' ')
	writeValue(&b, r.URL.RequestURI())
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(status))
	if why != "" {
		b.WriteString(" (")
		b.WriteString(why)
		b.WriteByte(')')
	}
	for _, f := range [...]struct{ label, header string }{
		{"event", webhook.HeaderEvent},
		{"attempt", webhook.HeaderAttempt},
		{"webhook-id", webhook.HeaderID},
		{"sequence", webhook.HeaderSequence},
	} {
		if v := r.Header.Get(f.header); v != "" {
			b.WriteByte(' ')
			b.WriteString(f.label)
			b.WriteByte('=')
			writeValue(&b, v)
		}
	}
	if len(h.cfg.Secrets) > 0 && err == nil {
		verr := webhook.Verify(h.cfg.Secrets, r.Header.Get(webhook.HeaderID),
			r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, now, 0)
		if verr == nil {
			b.WriteString(" signature ok")
		} else {
			b.WriteString(" signature INVALID: ")
			writeText(&b, verr.Error())
		}
	}
	b.WriteByte('\n')
	if err == nil {
		writeBody(&b, r.Header.Get("Content-Type"), body)
	}
	b.WriteByte('\n')

	h.mu.Lock()
	h.cfg.Out.Write(b.Bytes()) // a failing terminal is no reason to fail the request
	h.mu.Unlock()

	w.WriteHeader(status)
}
