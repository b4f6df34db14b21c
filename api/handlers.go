package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/herald-webhooks/herald"
)

// keyCreated answers POST /v1/clouds/{cloud}/keys: the key and, this once,
// its token.
type keyCreated struct {
	herald.Key
	Token string `json:"key"`
}

// createKey mints a cloud key. The body may be empty or {}; it is read
// strictly so that fields added later are not silently ignored by an older
// server.
func (a *API) createKey(w http.ResponseWriter, r *http.Request, cloud string) error {
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	if len(trimJSONSpace(body)) != 0 {
		if err := decodeJSON(body, &struct{}{}); err != nil {
			return err
		}
	}
	k, token, err := a.keys.Create(r.Context(), cloud)
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	// The token is shown once: no cache may keep it.
	w.Header().Set("Cache-Control", "no-store")
	return a.writeJSON(w, r, http.StatusCreated, keyCreated{Key: k, Token: token})
}

func (a *API) createSubscription(w http.ResponseWriter, r *http.Request, cloud string) error {
	var p herald.SubscriptionPatch
	if err := a.decode(w, r, &p); err != nil {
		return err
	}
	s, err := a.subs.Create(r.Context(), cloud, p)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	w.Header().Set("Location", "/v1/clouds/"+url.PathEscape(cloud)+"/subscriptions/"+url.PathEscape(s.ID))
	return a.writeJSON(w, r, http.StatusCreated, s)
}

// subscriptionList answers GET /v1/clouds/{cloud}/subscriptions.
type subscriptionList struct {
	Data []herald.Subscription `json:"data"`
}

func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request, cloud string) error {
	subs, err := a.subs.List(r.Context(), cloud)
	if err != nil {
		return fmt.Errorf("list subscriptions: %w", err)
	}
	if subs == nil {
		subs = []herald.Subscription{}
	}
	return a.writeJSON(w, r, http.StatusOK, subscriptionList{Data: subs})
}

func (a *API) getSubscription(w http.ResponseWriter, r *http.Request, cloud string) error {
	id, err := objectID(r)
	if err != nil {
		return err
	}
	s, err := a.subs.Get(r.Context(), cloud, id)
	if err != nil {
		return fmt.Errorf("get subscription: %w", err)
	}
	return a.writeJSON(w, r, http.StatusOK, s)
}

func (a *API) updateSubscription(w http.ResponseWriter, r *http.Request, cloud string) error {
	id, err := objectID(r)
	if err != nil {
		return err
	}
	var p herald.SubscriptionPatch
	if err := a.decode(w, r, &p); err != nil {
		return err
	}
	s, err := a.subs.Update(r.Context(), cloud, id, p)
	if err != nil {
		return fmt.Errorf("update subscription: %w", err)
	}
	return a.writeJSON(w, r, http.StatusOK, s)
}

func (a *API) deleteSubscription(w http.ResponseWriter, r *http.Request, cloud string) error {
	id, err := objectID(r)
	if err != nil {
		return err
	}
	if err := a.subs.Delete(r.Context(), cloud, id); err != nil {
		return fmt.Errorf("delete subscription: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// objectID is the path's {id}. One herald could never have minted is not
// found without asking the store.
func objectID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !herald.ValidObjectID(id) {
		return "", herald.ErrNotFound
	}
	return id, nil
}

// eventRequest is the body of POST /v1/clouds/{cloud}/events. The cloud
// comes from the path, never the body.
type eventRequest struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Data       json.RawMessage `json:"data"`
	OccurredAt string          `json:"occurred_at"` // RFC 3339; empty means now
}

// eventAccepted answers POST /v1/clouds/{cloud}/events.
type eventAccepted struct {
	ID       string `json:"id"`
	Sequence uint64 `json:"sequence"`
}

func (a *API) publishEvent(w http.ResponseWriter, r *http.Request, cloud string) error {
	var req eventRequest
	if err := a.decode(w, r, &req); err != nil {
		return err
	}
	e := herald.Event{ID: req.ID, Cloud: cloud, Type: req.Type, Data: req.Data}
	if req.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339, req.OccurredAt)
		if err != nil {
			return herald.Invalid("occurred_at", "must be an RFC 3339 time such as 2024-05-01T12:00:00Z")
		}
		e.OccurredAt = t
	}
	out, err := a.pub.Publish(r.Context(), e)
	if err != nil {
		return fmt.Errorf("publish event: %w", err)
	}
	return a.writeJSON(w, r, http.StatusAccepted, eventAccepted{ID: out.ID, Sequence: out.Sequence})
}

// healthStatus answers /healthz and a ready /readyz.
type healthStatus struct {
	Status string `json:"status"`
}

// healthz answers 200 while the process serves HTTP at all.
func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	_ = a.writeJSON(w, r, http.StatusOK, healthStatus{Status: "ok"})
}

// readyz answers 200 when Ready does, else 503 with Ready's error.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if a.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := a.ready(ctx); err != nil {
			_ = a.writeJSON(w, r, http.StatusServiceUnavailable, errorBody{Error: "not ready: " + err.Error()})
			return
		}
	}
	_ = a.writeJSON(w, r, http.StatusOK, healthStatus{Status: "ready"})
}

// writeJSON answers status with v as JSON. v is encoded before anything is
// written, so a value that cannot be encoded is returned as an error (a
// clean 500), never half an answer. A failure to write (the client left) is
// only logged at debug level.
func (a *API) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode answer: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if _, err := w.Write(append(b, '\n')); err != nil {
		a.log.Debug().Err(err).Str("method", r.Method).Str("route", routeOf(r)).Msg("write answer")
	}
	return nil
}
