package herald

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Notification body formats.
const (
	FormatForm = "form" // application/x-www-form-urlencoded, bracket notation
	FormatJSON = "json" // application/json, flat object
)

// AllEvents in a subscription's event list selects every type.
const AllEvents = "*"

// Limits on what a subscription may hold.
const (
	MaxURLLength         = 2048
	MaxEventsPerSub      = 64
	MaxCredentialsPerSub = 4
	MaxScopeIDLength     = 256
)

// Subscription is one endpoint of a cloud: where to send which events, in
// which format, and how to retry.
type Subscription struct {
	ID            string      `json:"id"`
	Cloud         string      `json:"cloud"`
	URL           string      `json:"url"`
	Events        []string    `json:"events"`
	Format        string      `json:"format"`
	Method        string      `json:"method"`
	Retry         RetryPolicy `json:"retry"`
	CredentialIDs []string    `json:"credential_ids"`
	Scope         *Scope      `json:"scope,omitempty"`
	Enabled       bool        `json:"enabled"`
	CreatedAt     time.Time   `json:"created_at"`
	UpdatedAt     time.Time   `json:"updated_at"`
}

// Scope narrows a subscription to the events of one live job or one video.
// A scoped subscription only receives events whose data carries the same
// job_id (or video_id); events without that field do not match it.
type Scope struct {
	JobID   string `json:"job_id,omitempty"`
	VideoID string `json:"video_id,omitempty"`
}

// SubscriptionPatch is what a client sends to create or change a
// subscription. A nil field is left as it is (on create: the default).
type SubscriptionPatch struct {
	URL           *string      `json:"url"`
	Events        []string     `json:"events"`
	Format        *string      `json:"format"`
	Method        *string      `json:"method"`
	Retry         *RetryPolicy `json:"retry"`
	CredentialID  *string      `json:"credential_id"`
	CredentialIDs []string     `json:"credential_ids"`
	Scope         *Scope       `json:"scope"`
	Enabled       *bool        `json:"enabled"`
}

// NewSubscription returns a subscription of cloud with every default set,
// the patch applied, and a fresh id. It does not validate: call Validate.
func NewSubscription(cloud string, p SubscriptionPatch, now time.Time) Subscription {
	s := Subscription{
		ID:            NewID("sub"),
		Cloud:         cloud,
		Format:        FormatJSON,
		Method:        "POST",
		Retry:         RetryPolicy{Strategy: StrategyExponential},
		CredentialIDs: []string{},
		Enabled:       true,
		CreatedAt:     now.UTC(),
	}
	s.Apply(p, now)
	return s
}

// Apply changes s by p and stamps UpdatedAt. A retry block replaces the
// whole policy; credential_id and credential_ids both replace the list.
func (s *Subscription) Apply(p SubscriptionPatch, now time.Time) {
	if p.URL != nil {
		s.URL = *p.URL
	}
	if p.Events != nil {
		s.Events = slices.Clone(p.Events)
	}
	if p.Format != nil {
		s.Format = *p.Format
	}
	if p.Method != nil {
		s.Method = strings.ToUpper(*p.Method)
	}
	if p.Retry != nil {
		s.Retry = *p.Retry
	}
	if p.CredentialIDs != nil || p.CredentialID != nil {
		ids := slices.Clone(p.CredentialIDs)
		if p.CredentialID != nil && *p.CredentialID != "" {
			ids = append([]string{*p.CredentialID}, ids...)
		}
		if ids == nil {
			ids = []string{}
		}
		s.CredentialIDs = ids
	}
	if p.Scope != nil {
		if *p.Scope == (Scope{}) {
			s.Scope = nil
		} else {
			sc := *p.Scope
			s.Scope = &sc
		}
	}
	if p.Enabled != nil {
		s.Enabled = *p.Enabled
	}
	s.Retry = s.Retry.WithDefaults()
	s.UpdatedAt = now.UTC()
}

// Validate checks every field of s. known reports whether an event type is
// registered. The error is a *ValidationError naming the first bad field.
func (s *Subscription) Validate(known func(string) bool) error {
	if !ValidCloud(s.Cloud) {
		return Invalid("cloud", "must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	if err := ValidateURL(s.URL); err != nil {
		return err
	}
	if len(s.Events) == 0 {
		return Invalid("events", `must name at least one event type, or ["*"] for all`)
	}
	if len(s.Events) > MaxEventsPerSub {
		return Invalid("events", fmt.Sprintf("at most %d event types", MaxEventsPerSub))
	}
	for i, t := range s.Events {
		field := fmt.Sprintf("events[%d]", i)
		switch {
		case t == AllEvents && len(s.Events) > 1:
			return Invalid(field, `"*" selects every type and stands alone`)
		case t == AllEvents:
		case !known(t):
			return Invalid(field, fmt.Sprintf("unknown event type %q", t))
		case slices.Index(s.Events, t) != i:
			return Invalid(field, fmt.Sprintf("event type %q is listed twice", t))
		}
	}
	if s.Format != FormatForm && s.Format != FormatJSON {
		return Invalid("format", `must be "form" or "json"`)
	}
	if s.Method != "POST" && s.Method != "PUT" {
		return Invalid("method", `must be "POST" or "PUT"`)
	}
	if err := s.Retry.Validate(); err != nil {
		return err
	}
	if len(s.CredentialIDs) > MaxCredentialsPerSub {
		return Invalid("credential_ids", fmt.Sprintf("at most %d credentials", MaxCredentialsPerSub))
	}
	for i, id := range s.CredentialIDs {
		if !ValidObjectID(id) {
			return Invalid(fmt.Sprintf("credential_ids[%d]", i), "is not a credential id")
		}
		if slices.Index(s.CredentialIDs, id) != i {
			return Invalid(fmt.Sprintf("credential_ids[%d]", i), "is listed twice")
		}
	}
	if s.Scope != nil {
		if len(s.Scope.JobID) > MaxScopeIDLength {
			return Invalid("scope.job_id", fmt.Sprintf("at most %d characters", MaxScopeIDLength))
		}
		if len(s.Scope.VideoID) > MaxScopeIDLength {
			return Invalid("scope.video_id", fmt.Sprintf("at most %d characters", MaxScopeIDLength))
		}
	}
	return nil
}

// ValidateURL checks that raw is an absolute http or https URL with a host,
// no user info (use a credential) and no fragment.
func ValidateURL(raw string) error {
	if raw == "" {
		return Invalid("url", "is required")
	}
	if len(raw) > MaxURLLength {
		return Invalid("url", fmt.Sprintf("at most %d characters", MaxURLLength))
	}
	if strings.ContainsAny(raw, "\r\n\t ") {
		return Invalid("url", "must not contain white space")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Invalid("url", "is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Invalid("url", "must use http or https")
	}
	if u.Hostname() == "" {
		return Invalid("url", "must name a host")
	}
	if u.User != nil {
		return Invalid("url", "must not carry user info: store it as a basic credential")
	}
	if u.Fragment != "" {
		return Invalid("url", "must not have a fragment")
	}
	return nil
}

// Wants reports whether s, enabled, should receive an event of type typ
// whose data is data. Data is only read when s has a scope.
func (s *Subscription) Wants(typ string, data json.RawMessage) bool {
	if !s.Enabled {
		return false
	}
	if len(s.Events) != 1 || s.Events[0] != AllEvents {
		if !slices.Contains(s.Events, typ) {
			return false
		}
	}
	if s.Scope == nil {
		return true
	}
	var ids struct {
		JobID   *string `json:"job_id"`
		VideoID *string `json:"video_id"`
	}
	if json.Unmarshal(data, &ids) != nil {
		return false
	}
	if s.Scope.JobID != "" && (ids.JobID == nil || *ids.JobID != s.Scope.JobID) {
		return false
	}
	if s.Scope.VideoID != "" && (ids.VideoID == nil || *ids.VideoID != s.Scope.VideoID) {
		return false
	}
	return true
}
