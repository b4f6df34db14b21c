package subscriptions

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// EncryptionKeySize is the size of a credential encryption key: 32 bytes,
// for AES-256-GCM.
const EncryptionKeySize = 32

// EncryptionKey encrypts credentials at rest (AES-256-GCM). Read one with
// ParseEncryptionKeys. It never prints: every fmt verb and JSON show
// "[redacted]"; its ID (a fingerprint) is safe to show.
type EncryptionKey struct {
	key [EncryptionKeySize]byte
	id  string
}

// ID is a short fingerprint of the key (8 hex digits of a SHA-256 over a
// label and the key). It tells which key sealed a record without revealing
// anything about the key.
func (k EncryptionKey) ID() string { return k.id }

// String returns "[redacted]".
func (k EncryptionKey) String() string { return "[redacted]" }

// GoString returns "[redacted]".
func (k EncryptionKey) GoString() string { return "[redacted]" }

// Format writes "[redacted]" for every verb.
func (k EncryptionKey) Format(f fmt.State, _ rune) { io.WriteString(f, "[redacted]") }

// MarshalJSON writes "[redacted]".
func (k EncryptionKey) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// NewEncryptionKey returns a fresh random key and its text form (base64),
// the form ParseEncryptionKeys reads.
func NewEncryptionKey() (EncryptionKey, string, error) {
	var b [EncryptionKeySize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return EncryptionKey{}, "", fmt.Errorf("new encryption key: %w", err)
	}
	return newKey(b), base64.StdEncoding.EncodeToString(b[:]), nil
}

func newKey(b [EncryptionKeySize]byte) EncryptionKey {
	sum := sha256.Sum256(append([]byte("herald credential key id\x00"), b[:]...))
	return EncryptionKey{key: b, id: hex.EncodeToString(sum[:4])}
}

// ParseEncryptionKeys reads HERALD_ENCRYPTION_KEY: one key, or several
// separated by commas. Each is 32 random bytes in base64 (standard or URL
// alphabet, padded or not), as `openssl rand -base64 32` prints. The first
// key encrypts; every key decrypts, so that a new key can be put first
// while records sealed under the old one are still read. An empty string
// is no key at all. Errors say which key is wrong and why, never what it
// holds.
func ParseEncryptionKeys(s string) ([]EncryptionKey, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var keys []EncryptionKey
	seen := map[string]bool{}
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		b, err := decodeKey(part)
		if err != nil {
			return nil, fmt.Errorf("encryption key %d of %d: %w", i+1, strings.Count(s, ",")+1, err)
		}
		k := newKey(b)
		if seen[k.id] {
			return nil, fmt.Errorf("encryption key %d of %d: the same key is given twice", i+1, strings.Count(s, ",")+1)
		}
		seen[k.id] = true
		keys = append(keys, k)
	}
	return keys, nil
}

func decodeKey(s string) ([EncryptionKeySize]byte, error) {
	var out [EncryptionKeySize]byte
	if s == "" {
		return out, errors.New("is empty")
	}
	trimmed := strings.TrimRight(s, "=")
	var b []byte
	var err error
	if strings.ContainsAny(trimmed, "-_") {
		b, err = base64.RawURLEncoding.DecodeString(trimmed)
	} else {
		b, err = base64.RawStdEncoding.DecodeString(trimmed)
	}
	if err != nil {
		return out, fmt.Errorf("is not base64 (make one with: openssl rand -base64 32)")
	}
	if len(b) != EncryptionKeySize {
		return out, fmt.Errorf("is %d bytes, want %d (make one with: openssl rand -base64 32)", len(b), EncryptionKeySize)
	}
	copy(out[:], b)
	return out, nil
}

// sealer encrypts with the first key and decrypts with any of them.
type sealer struct {
	ids   []string // key ids, in order; ids[0] seals
	aeads map[string]cipher.AEAD
}

func newSealer(keys []EncryptionKey) (*sealer, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	s := &sealer{aeads: map[string]cipher.AEAD{}}
	for _, k := range keys {
		block, err := aes.NewCipher(k.key[:])
		if err != nil {
			return nil, fmt.Errorf("credentials: encryption key %s: %w", k.id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("credentials: encryption key %s: %w", k.id, err)
		}
		s.ids = append(s.ids, k.id)
		s.aeads[k.id] = aead
	}
	return s, nil
}

// seal encrypts plaintext under the first key. aad binds the ciphertext to
// its record (cloud and id), so that a sealed secret copied into another
// record, another cloud's included, does not open.
func (s *sealer) seal(plaintext, aad []byte) (keyID string, sealed []byte, err error) {
	aead := s.aeads[s.ids[0]]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, fmt.Errorf("seal: %w", err)
	}
	return s.ids[0], aead.Seal(nonce, nonce, plaintext, aad), nil
}

// errNoKey: a record is sealed under a key this process was not given.
var errNoKey = errors.New("sealed under an encryption key this process does not have (check HERALD_ENCRYPTION_KEY)")

// errTampered: a sealed record does not open under its key.
var errTampered = errors.New("does not decrypt: damaged, or copied from another record")

// open decrypts a record sealed under keyID.
func (s *sealer) open(keyID string, sealed, aad []byte) ([]byte, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: key %s", errNoKey, keyID)
	}
	aead, ok := s.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: key %s", errNoKey, keyID)
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errTampered
	}
	nonce, ct := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, aad)
	if err != nil {
		return nil, errTampered
	}
	return pt, nil
}
