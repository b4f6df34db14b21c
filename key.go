package herald

import "time"

// Key is a cloud key: a bearer token that acts on one cloud only. The token
// itself is never stored, only its hash; it is shown to the caller once,
// when the key is minted.
type Key struct {
	ID        string    `json:"id"`
	Cloud     string    `json:"cloud"`
	CreatedAt time.Time `json:"created_at"`
}
