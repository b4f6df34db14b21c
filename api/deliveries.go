package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/herald-webhooks/herald"
)

// Deliveries reads the delivery log and acts on deliveries. Every method is
// safe for concurrent use and returns herald.ErrNotFound for a delivery
// that is not in that cloud, herald.ErrConflict when the state does not
// allow the action (redelivering a pending delivery, an event no longer
// retained), a *herald.ValidationError for a bad filter, and
// herald.ErrUnavailable when NATS cannot be reached.
type Deliveries interface {
	List(ctx context.Context, cloud string, f herald.DeliveryFilter) (herald.DeliveryPage, error)
	// Delivery finds one delivery of cloud by id.
	Delivery(ctx context.Context, cloud, id string) (herald.Delivery, error)
	// DeliveryOf reads delivery id of subscription subID directly.
	DeliveryOf(ctx context.Context, cloud, subID, id string) (herald.Delivery, error)
	// Redeliver sends a settled delivery again now, on a fresh schedule.
	Redeliver(ctx context.Context, cloud, id string) (herald.Delivery, error)
	// Test sends sub a test notification now; a failed attempt is
	// reported in the Attempt, err only when none could be made.
	Test(ctx context.Context, sub herald.Subscription) (herald.Event, herald.Attempt, error)
}

// deliveryQuery is what GET …/deliveries takes.
var deliveryQuery = []string{"subscription_id", "event_id", "status", "limit", "cursor"}

// listDeliveries answers GET /v1/clouds/{cloud}/deliveries: the delivery log,
// filtered by subscription, event and status, a page at a time.
func (a *API) listDeliveries(w http.ResponseWriter, r *http.Request, cloud string) error {
	q := r.URL.Query()
	for k := range q {
		if !contains(deliveryQuery, k) {
			return herald.Invalid(k, "is not a filter of the delivery log (subscription_id, event_id, status, limit, cursor)")
		}
		if len(q[k]) > 1 {
			return herald.Invalid(k, "is given more than once")
		}
	}
	f := herald.DeliveryFilter{SubscriptionID: q.Get("subscription_id"), Status: q.Get("status"), Cursor: q.Get("cursor")}
	if f.Status != "" && !herald.ValidDeliveryStatus(f.Status) {
		return herald.Invalid("status", "must be pending, succeeded, failed or superseded")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > herald.MaxDeliveryPage {
			return herald.Invalid("limit", fmt.Sprintf("must be a whole number from 1 to %d", herald.MaxDeliveryPage))
		}
		f.Limit = n
	}
	if f.SubscriptionID != "" && !herald.ValidObjectID(f.SubscriptionID) {
		return herald.Invalid("subscription_id", "is not a subscription id")
	}
	eventID := q.Get("event_id")
	if eventID == "" {
		page, err := a.dlv.List(r.Context(), cloud, f)
		if err != nil {
			return fmt.Errorf("list deliveries: %w", err)
		}
		return a.writeJSON(w, r, http.StatusOK, page)
	}
	if !herald.ValidEventID(eventID) {
		return herald.Invalid("event_id", "is not an event id")
	}
	if f.Cursor != "" {
		return herald.Invalid("cursor", "does not apply with event_id: an event's deliveries fit one page")
	}
	page, err := a.eventDeliveries(r.Context(), cloud, eventID, f)
	if err != nil {
		return fmt.Errorf("list deliveries: %w", err)
	}
	return a.writeJSON(w, r, http.StatusOK, page)
}

// eventDeliveries finds an event's deliveries directly: a delivery's id
// follows from the event's and the subscription's, so each of the cloud's
// subscriptions (or the one asked for) costs one read, whatever the size
// of the log. Deliveries of since-deleted subscriptions are not found.
func (a *API) eventDeliveries(ctx context.Context, cloud, eventID string, f herald.DeliveryFilter) (herald.DeliveryPage, error) {
	subIDs := []string{f.SubscriptionID}
	if f.SubscriptionID == "" {
		subs, err := a.subs.List(ctx, cloud)
		if err != nil {
			return herald.DeliveryPage{}, err
		}
		subIDs = subIDs[:0]
		for _, s := range subs {
			subIDs = append(subIDs, s.ID)
		}
	}
	page := herald.DeliveryPage{Deliveries: []herald.Delivery{}}
	for _, sub := range subIDs {
		d, err := a.dlv.DeliveryOf(ctx, cloud, sub, herald.DeliveryID(cloud, eventID, sub))
		if errors.Is(err, herald.ErrNotFound) {
			continue
		}
		if err != nil {
			return herald.DeliveryPage{}, err
		}
		if f.Status == "" || d.Status == f.Status {
			page.Deliveries = append(page.Deliveries, d)
		}
	}
	if f.Limit > 0 && len(page.Deliveries) > f.Limit {
		page.Deliveries = page.Deliveries[:f.Limit]
	}
	return page, nil
}

func (a *API) getDelivery(w http.ResponseWriter, r *http.Request, cloud string) error {
	id, err := objectID(r)
	if err != nil {
		return err
	}
	d, err := a.dlv.Delivery(r.Context(), cloud, id)
	if err != nil {
		return fmt.Errorf("get delivery: %w", err)
	}
	return a.writeJSON(w, r, http.StatusOK, d)
}

// redeliver answers POST …/deliveries/{id}/redeliver: 202 with the
// delivery, pending again.
func (a *API) redeliver(w http.ResponseWriter, r *http.Request, cloud string) error {
	id, err := objectID(r)
	if err != nil {
		return err
	}
	if err := a.emptyBody(w, r); err != nil {
		return err
	}
	d, err := a.dlv.Delivery(r.Context(), cloud, id)
	if err != nil {
		return fmt.Errorf("redeliver: %w", err)
	}
	if _, err := a.subs.Get(r.Context(), cloud, d.SubscriptionID); errors.Is(err, herald.ErrNotFound) {
		return herald.Conflict("the delivery's subscription was deleted")
	} else if err != nil {
		return fmt.Errorf("redeliver: %w", err)
	}
	d, err = a.dlv.Redeliver(r.Context(), cloud, id)
	if err != nil {
		return fmt.Errorf("redeliver: %w", err)
	}
	return a.writeJSON(w, r, http.StatusAccepted, d)
}

// testResult answers POST …/subscriptions/{id}/test.
type testResult struct {
	Succeeded bool           `json:"succeeded"`
	Event     herald.Event   `json:"event"`
	Attempt   herald.Attempt `json:"attempt"`
}

// testSubscription sends a test notification synchronously and answers
// with the attempt, whatever the endpoint answered.
func (a *API) testSubscription(w http.ResponseWriter, r *http.Request, cloud string) error {
	id, err := objectID(r)
	if err != nil {
		return err
	}
	if err := a.emptyBody(w, r); err != nil {
		return err
	}
	sub, err := a.subs.Get(r.Context(), cloud, id)
	if err != nil {
		return fmt.Errorf("test subscription: %w", err)
	}
	ev, att, err := a.dlv.Test(r.Context(), sub)
	if err != nil {
		return fmt.Errorf("test subscription: %w", err)
	}
	return a.writeJSON(w, r, http.StatusOK, testResult{Succeeded: att.Succeeded(), Event: ev, Attempt: att})
}

// emptyBody reads a body that must be empty or {}.
func (a *API) emptyBody(w http.ResponseWriter, r *http.Request) error {
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	if len(trimJSONSpace(body)) != 0 {
		return decodeJSON(body, &struct{}{})
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
