package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/herald-webhooks/herald"
)

// SecretPrefix starts the text form of a signing secret.
const SecretPrefix = "whsec_"

// MinSecretSize and MaxSecretSize bound the key ParseSecret accepts, in
// bytes: the Standard Webhooks specification asks for 24 to 64.
const (
	MinSecretSize = 24
	MaxSecretSize = 64
)

// DefaultTolerance is how far a webhook-timestamp may lie from the
// receiver's clock, either way, when Verify is given no tolerance: the
// Standard Webhooks libraries' five minutes.
const DefaultTolerance = 5 * time.Minute

// Errors Verify returns, wrapped with the detail; test with errors.Is.
var (
	// ErrMissingHeader: webhook-id, webhook-timestamp or
	// webhook-signature is absent or empty.
	ErrMissingHeader = errors.New("missing header")
	// ErrTimestamp: webhook-timestamp is not Unix seconds, or lies
	// further from now than the tolerance.
	ErrTimestamp = errors.New("timestamp rejected")
	// ErrNoMatch: no v1 signature in webhook-signature matches any secret.
	ErrNoMatch = errors.New("no signature matches")
)

// Secret is a Standard Webhooks signing secret: the HMAC-SHA256 key, given
// as text as "whsec_" followed by the key in base64. The zero Secret has an
// empty key; make one with ParseSecret or NewSecret.
//
// A Secret never prints its key: String, GoString and every fmt verb show
// "whsec_…redacted", and encoding/json sees no exported field.
type Secret struct {
	key []byte
}

const redacted = SecretPrefix + "…redacted"

// ParseSecret reads a secret given as "whsec_<base64>" (standard alphabet,
// padded or not). The prefix is required, so that a secret pasted from
// elsewhere (a password, a hex string) is refused instead of silently
// signing with the wrong key. The key must be at least MinSecretSize bytes.
// Errors never quote the secret.
func ParseSecret(s string) (Secret, error) {
	b64, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return Secret{}, herald.Invalid("secret", `must be "whsec_" followed by the key in base64`)
	}
	key, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "="))
	if err != nil {
		return Secret{}, herald.Invalid("secret", "the part after whsec_ is not valid base64: "+err.Error())
	}
	if len(key) < MinSecretSize {
		return Secret{}, herald.Invalid("secret", fmt.Sprintf("key is %d bytes, fewer than the %d required", len(key), MinSecretSize))
	}
	if len(key) > MaxSecretSize {
		return Secret{}, herald.Invalid("secret", fmt.Sprintf("key is %d bytes, more than the %d allowed", len(key), MaxSecretSize))
	}
	return Secret{key: key}, nil
}

// NewSecret returns a fresh secret of 32 random bytes and its text form
// ("whsec_" and padded base64), to be shown to its owner once.
func NewSecret() (Secret, string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return Secret{}, "", fmt.Errorf("new secret: %w", err)
	}
	return Secret{key: key}, SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// Equal reports whether s and o are the same key, in constant time.
func (s Secret) Equal(o Secret) bool { return subtle.ConstantTimeCompare(s.key, o.key) == 1 }

// String returns "whsec_…redacted", never the key.
func (s Secret) String() string { return redacted }

// GoString returns "webhook.Secret(whsec_…redacted)", never the key.
func (s Secret) GoString() string { return "webhook.Secret(" + redacted + ")" }

// Format writes "whsec_…redacted" for every verb, so that no verb (%x, %d,
// %+v) reveals the key.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, s.GoString())
		return
	}
	io.WriteString(f, redacted)
}

// sigLen is the length of a "v1,<base64 of 32 bytes>" signature.
const sigLen = len("v1,") + 44

// Sign returns the webhook-signature value of a message: "v1," and the
// base64 HMAC-SHA256, keyed with s, of "{msgID}.{unix seconds of ts}.{body}"
// (Standard Webhooks).
func (s Secret) Sign(msgID string, ts time.Time, body []byte) string {
	prefix := make([]byte, 0, len(msgID)+22)
	prefix = append(prefix, msgID...)
	prefix = append(prefix, '.')
	prefix = strconv.AppendInt(prefix, ts.Unix(), 10)
	prefix = append(prefix, '.')
	var sig [sigLen]byte
	return string(s.sign(sig[:0], prefix, body))
}

// SignatureHeader returns the webhook-signature value of a message signed
// by every one of secrets, in order, space-separated: "v1,<a> v1,<b>". A
// secret being rotated out signs beside its successor, so that a receiver
// that knows either one verifies. It returns "" for no secrets.
func SignatureHeader(secrets []Secret, msgID string, ts time.Time, body []byte) string {
	if len(secrets) == 0 {
		return ""
	}
	prefix := make([]byte, 0, len(msgID)+22)
	prefix = append(prefix, msgID...)
	prefix = append(prefix, '.')
	prefix = strconv.AppendInt(prefix, ts.Unix(), 10)
	prefix = append(prefix, '.')
	out := make([]byte, 0, len(secrets)*(sigLen+1))
	for i, s := range secrets {
		if i > 0 {
			out = append(out, ' ')
		}
		out = s.sign(out, prefix, body)
	}
	return string(out)
}

// sign appends "v1,<base64 MAC of prefix and body>" to dst.
func (s Secret) sign(dst, prefix, body []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(prefix)
	m.Write(body)
	var sum [sha256.Size]byte
	dst = append(dst, "v1,"...)
	return base64.StdEncoding.AppendEncode(dst, m.Sum(sum[:0]))
}

// Verify checks a request's Standard Webhooks headers: msgID (webhook-id),
// timestampHeader (webhook-timestamp, Unix seconds) and signatureHeader
// (webhook-signature: one or more space-separated "<version>,<base64>"
// entries). It passes when the timestamp lies within tolerance of now,
// either way (DefaultTolerance when tolerance ≤ 0), and any v1 entry
// matches the signature of body under any of secrets, compared in constant
// time; entries of other versions are ignored.
//
// The error says what failed and wraps ErrMissingHeader, ErrTimestamp or
// ErrNoMatch. Verify with no secrets is an error too.
func Verify(secrets []Secret, msgID, timestampHeader, signatureHeader string, body []byte, now time.Time, tolerance time.Duration) error {
	if len(secrets) == 0 {
		return errors.New("verify: no secret to verify with")
	}
	switch {
	case msgID == "":
		return fmt.Errorf("%w %s", ErrMissingHeader, HeaderID)
	case timestampHeader == "":
		return fmt.Errorf("%w %s", ErrMissingHeader, HeaderTimestamp)
	case strings.TrimSpace(signatureHeader) == "":
		return fmt.Errorf("%w %s", ErrMissingHeader, HeaderSignature)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	unix, err := strconv.ParseInt(timestampHeader, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not Unix seconds", ErrTimestamp, HeaderTimestamp, timestampHeader)
	}
	switch age := now.Sub(time.Unix(unix, 0)); {
	case age > tolerance:
		return fmt.Errorf("%w: %s old, over the %s tolerance", ErrTimestamp, age, tolerance)
	case age < -tolerance:
		return fmt.Errorf("%w: %s in the future, over the %s tolerance", ErrTimestamp, -age, tolerance)
	}

	// What was signed is the header's text, not a number read from it.
	prefix := make([]byte, 0, len(msgID)+len(timestampHeader)+2)
	prefix = append(prefix, msgID...)
	prefix = append(prefix, '.')
	prefix = append(prefix, timestampHeader...)
	prefix = append(prefix, '.')
	entries := 0
	var sig [sigLen]byte
	for i, secret := range secrets {
		want := secret.sign(sig[:0], prefix, body)
		for rest := signatureHeader; rest != ""; {
			var entry string
			entry, rest, _ = strings.Cut(rest, " ")
			if !strings.HasPrefix(entry, "v1,") {
				continue
			}
			if i == 0 {
				entries++
			}
			if subtle.ConstantTimeCompare(want, []byte(entry)) == 1 {
				return nil
			}
		}
	}
	if entries == 0 {
		return fmt.Errorf("%w: %s has no v1 entry", ErrNoMatch, HeaderSignature)
	}
	return fmt.Errorf("%w: checked %d v1 signature(s) against %d secret(s)", ErrNoMatch, entries, len(secrets))
}
