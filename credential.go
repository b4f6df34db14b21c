package herald

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Credential types (SPEC §5).
const (
	// CredentialBasic sets "Authorization: Basic base64(username:password)".
	CredentialBasic = "basic"
	// CredentialBearer sets "Authorization: Bearer <token>".
	CredentialBearer = "bearer"
	// CredentialHeader sets one header of the cloud's choosing.
	CredentialHeader = "header"
	// CredentialHMAC signs each request with a Standard Webhooks secret
	// (webhook-signature).
	CredentialHMAC = "hmac"
)

// Limits on what a credential may hold.
const (
	MaxCredentialName     = 128
	MaxCredentialUsername = 256
	MaxCredentialPassword = 1024
	MaxCredentialToken    = 4096
	MaxCredentialHeader   = 64
	MaxCredentialValue    = 4096
)

// Credential is what herald tells about a stored credential of a cloud: its
// id, name, type and time of creation. It never holds the secret; the
// secret is write-only and lives in the credential store, encrypted.
type Credential struct {
	ID        string    `json:"id"`
	Cloud     string    `json:"-"`
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
}

// SecretString is a string that never prints: String, GoString, every fmt
// verb and JSON encoding show "[redacted]". It holds a secret a client
// sends (a password, a token), so that a log line or error that formats it
// by mistake reveals nothing. Decoding from JSON works as for a string.
type SecretString string

const redactedText = "[redacted]"

// Reveal returns the secret itself, for the one place that must use it.
func (s SecretString) Reveal() string { return string(s) }

// String returns "[redacted]".
func (s SecretString) String() string { return redactedText }

// GoString returns "[redacted]".
func (s SecretString) GoString() string { return redactedText }

// Format writes "[redacted]" for every verb.
func (s SecretString) Format(f fmt.State, _ rune) { io.WriteString(f, redactedText) }

// MarshalJSON writes "[redacted]".
func (s SecretString) MarshalJSON() ([]byte, error) { return json.Marshal(redactedText) }

// MarshalText writes "[redacted]" (used by encoders that prefer text).
func (s SecretString) MarshalText() ([]byte, error) { return []byte(redactedText), nil }

// CredentialSpec is what a client sends to store a credential (SPEC §5).
// Which fields a type takes:
//
//	basic:  username, password
//	bearer: token
//	header: header, value
//	hmac:   secret ("whsec_<base64>"; omitted, herald generates one)
//
// The secret fields are SecretStrings: they never print.
type CredentialSpec struct {
	Name     string       `json:"name"`
	Type     string       `json:"type"`
	Username SecretString `json:"username"`
	Password SecretString `json:"password"`
	Token    SecretString `json:"token"`
	Header   string       `json:"header"`
	Value    SecretString `json:"value"`
	Secret   SecretString `json:"secret"`
}

// Validate checks everything but the hmac secret's encoding (which the
// store, knowing the signature scheme, checks). The error is a
// *ValidationError naming the field, and never quotes a secret.
func (c *CredentialSpec) Validate() error {
	switch {
	case c.Name == "":
		return Invalid("name", "is required")
	case utf8.RuneCountInString(c.Name) > MaxCredentialName:
		return Invalid("name", fmt.Sprintf("at most %d characters", MaxCredentialName))
	case !utf8.ValidString(c.Name) || hasControl(c.Name):
		return Invalid("name", "must be UTF-8 text without control characters")
	}
	used := map[string]bool{}
	switch c.Type {
	case CredentialBasic:
		used["username"], used["password"] = true, true
		switch u := c.Username.Reveal(); {
		case u == "":
			return Invalid("username", "is required for a basic credential")
		case len(u) > MaxCredentialUsername:
			return Invalid("username", fmt.Sprintf("at most %d bytes", MaxCredentialUsername))
		case strings.Contains(u, ":"):
			return Invalid("username", `must not contain ":" (RFC 7617)`)
		case !utf8.ValidString(u) || hasControl(u):
			return Invalid("username", "must be UTF-8 text without control characters")
		}
		switch p := c.Password.Reveal(); {
		case len(p) > MaxCredentialPassword:
			return Invalid("password", fmt.Sprintf("at most %d bytes", MaxCredentialPassword))
		case !utf8.ValidString(p) || hasControl(p):
			return Invalid("password", "must be UTF-8 text without control characters")
		}
	case CredentialBearer:
		used["token"] = true
		switch tok := c.Token.Reveal(); {
		case tok == "":
			return Invalid("token", "is required for a bearer credential")
		case len(tok) > MaxCredentialToken:
			return Invalid("token", fmt.Sprintf("at most %d bytes", MaxCredentialToken))
		case !visibleASCII(tok):
			return Invalid("token", "must be printable ASCII without spaces")
		}
	case CredentialHeader:
		used["header"], used["value"] = true, true
		if err := ValidateCredentialHeader(c.Header); err != nil {
			return err
		}
		switch v := c.Value.Reveal(); {
		case v == "":
			return Invalid("value", "is required for a header credential")
		case len(v) > MaxCredentialValue:
			return Invalid("value", fmt.Sprintf("at most %d bytes", MaxCredentialValue))
		case strings.ContainsAny(v, "\r\n\x00"):
			return Invalid("value", "must not contain CR, LF or NUL")
		case hasControl(strings.ReplaceAll(v, "\t", " ")):
			return Invalid("value", "must not contain control characters")
		case strings.TrimSpace(v) != v:
			return Invalid("value", "must not start or end with white space")
		}
	case CredentialHMAC:
		used["secret"] = true
	case "":
		return Invalid("type", `is required: "basic", "bearer", "header" or "hmac"`)
	default:
		return Invalid("type", `must be "basic", "bearer", "header" or "hmac"`)
	}
	// A field of another type is a mistake (a token sent with type basic):
	// say so rather than store a credential that does not do what was meant.
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"username", c.Username != ""},
		{"password", c.Password != ""},
		{"token", c.Token != ""},
		{"header", c.Header != ""},
		{"value", c.Value != ""},
		{"secret", c.Secret != ""},
	} {
		if f.set && !used[f.name] {
			return Invalid(f.name, fmt.Sprintf("is not used by a %s credential", c.Type))
		}
	}
	return nil
}

// reservedHeaders are the headers herald sets itself or that belong to the
// connection; a header credential may not set them. Names are lower case.
var reservedHeaders = map[string]bool{
	"host": true, "content-type": true, "content-length": true, "content-encoding": true,
	"transfer-encoding": true, "user-agent": true, "connection": true, "keep-alive": true,
	"te": true, "trailer": true, "upgrade": true, "expect": true, "accept-encoding": true,
	"proxy-authorization": true, "proxy-authenticate": true, "proxy-connection": true,
}

// reservedHeaderPrefixes are header name prefixes herald keeps for itself.
var reservedHeaderPrefixes = []string{"webhook-", "herald-", "proxy-"}

// ValidateCredentialHeader checks the header name of a header credential:
// an HTTP token (RFC 9110) of at most MaxCredentialHeader characters, and
// none of the headers herald sets itself (webhook-*, herald-*,
// content-type, user-agent, host, …) or that belong to the connection.
// Authorization is allowed (a custom scheme); it then takes the place of a
// basic or bearer credential.
func ValidateCredentialHeader(name string) error {
	switch {
	case name == "":
		return Invalid("header", "is required for a header credential")
	case len(name) > MaxCredentialHeader:
		return Invalid("header", fmt.Sprintf("at most %d characters", MaxCredentialHeader))
	}
	for i := range len(name) {
		if !isTokenChar(name[i]) {
			return Invalid("header", "must be a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")
		}
	}
	lower := strings.ToLower(name)
	if reservedHeaders[lower] {
		return Invalid("header", fmt.Sprintf("%s is set by herald or the connection and cannot be a credential", name))
	}
	for _, p := range reservedHeaderPrefixes {
		if strings.HasPrefix(lower, p) {
			return Invalid("header", fmt.Sprintf("%s* headers are herald's own and cannot be a credential", p))
		}
	}
	return nil
}

// CredentialEffect names what a credential of type typ (with header name
// header, for a header credential) sets on a request, in lower case:
// "authorization" for basic and bearer, "webhook-signature" for hmac, the
// header's name for a header credential. A subscription may hold at most
// one credential per effect.
func CredentialEffect(typ, header string) string {
	switch typ {
	case CredentialBasic, CredentialBearer:
		return "authorization"
	case CredentialHMAC:
		return "webhook-signature"
	}
	return strings.ToLower(header)
}

// Rotation is what a client sends to rotate an hmac credential's secret:
// the new secret (omitted: generated) and how long the old one keeps
// signing beside it (omitted: DefaultRotationOverlap).
type Rotation struct {
	Secret      SecretString `json:"secret"`
	ExpireAfter *Duration    `json:"expire_after"`
}

// Rotation bounds.
const (
	// DefaultRotationOverlap is how long the previous secret keeps
	// signing after a rotation.
	DefaultRotationOverlap = 24 * time.Hour
	// MaxRotationOverlap bounds expire_after.
	MaxRotationOverlap = 7 * 24 * time.Hour
)

// Overlap returns how long the previous secret keeps signing, checked.
func (r *Rotation) Overlap() (time.Duration, error) {
	if r.ExpireAfter == nil {
		return DefaultRotationOverlap, nil
	}
	d := r.ExpireAfter.Std()
	if d < 0 || d > MaxRotationOverlap {
		return 0, Invalid("expire_after", fmt.Sprintf("must be between 0s and %s", MaxRotationOverlap))
	}
	return d, nil
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func visibleASCII(s string) bool {
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}
