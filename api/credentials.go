package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/herald-webhooks/herald"
)

// keyList answers GET /v1/clouds/{cloud}/keys: ids and times, never tokens.
type keyList struct {
	Data []herald.Key `json:"data"`
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request, cloud string) error {
	keys, err := a.keys.List(r.Context(), cloud)
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	if keys == nil {
		keys = []herald.Key{}
	}
	return a.writeJSON(w, r, http.StatusOK, keyList{Data: keys})
}

// deleteKey revokes a cloud key; requests made with it fail from now on.
func (a *API) deleteKey(w http.ResponseWriter, r *http.Request, cloud string) error {
	id, err := objectID(r)
	if err != nil {
		return err
	}
	if err := a.keys.Delete(r.Context(), cloud, id); err != nil {
		return fmt.Errorf("delete key: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// credentialAnswer is every answer about a credential: id, name, type and
// creation time. Secret is set only in the answer that creates or rotates
// an hmac credential whose secret herald generated: that once.
type credentialAnswer struct {
	herald.Credential
	Secret string `json:"secret,omitempty"`
	// PreviousExpiresAt answers a rotation: when the previous secret
	// stops signing.
	PreviousExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
}

// credentialList answers GET /v1/clouds/{cloud}/credentials.
type credentialList struct {
	Data []herald.Credential `json:"data"`
}

func (a *API) createCredential(w http.ResponseWriter, r *http.Request, cloud string) error {
	var spec herald.CredentialSpec
	if err := a.decodeSecret(w, r, &spec); err != nil {
		return err
	}
	c, generated, err := a.creds.Create(r.Context(), cloud, spec)
	if err != nil {
		return fmt.Errorf("create credential: %w", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", "/v1/clouds/"+url.PathEscape(cloud)+"/credentials/"+url.PathEscape(c.ID))
	return a.writeJSON(w, r, http.StatusCreated, credentialAnswer{Credential: c, Secret: generated})
}

func (a *API) listCredentials(w http.ResponseWriter, r *http.Request, cloud string) error {
	list, err := a.creds.List(r.Context(), cloud)
	if err != nil {
		return fmt.Errorf("list credentials: %w", err)
	}
	if list == nil {
		list = []herald.Credential{}
	}
	return a.writeJSON(w, r, http.StatusOK, credentialList{Data: list})
}

func (a *API) getCredential(w http.ResponseWriter, r *http.Request, cloud string) error {
	id, err := objectID(r)
	if err != nil {
		return err
	}
	c, err := a.creds.Get(r.Context(), cloud, id)
	if err != nil {
		return fmt.Errorf("get credential: %w", err)
	}
	return a.writeJSON(w, r, http.StatusOK, c)
}

func (a *API) deleteCredential(w http.ResponseWriter, r *http.Request, cloud string) error {
	id, err := objectID(r)
	if err != nil {
		return err
	}
	if err := a.creds.Delete(r.Context(), cloud, id); err != nil {
		return fmt.Errorf("delete credential: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rotateCredential gives an hmac credential a new secret. The body may be
// empty or {} (generate one, keep the old one 24 h), or carry "secret"
// and "expire_after".
func (a *API) rotateCredential(w http.ResponseWriter, r *http.Request, cloud string) error {
	id, err := objectID(r)
	if err != nil {
		return err
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	var rot herald.Rotation
	if len(trimJSONSpace(body)) != 0 {
		if err := redactSyntax(decodeJSON(body, &rot)); err != nil {
			return err
		}
	}
	c, generated, expires, err := a.creds.Rotate(r.Context(), cloud, id, rot)
	if err != nil {
		return fmt.Errorf("rotate credential: %w", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	return a.writeJSON(w, r, http.StatusOK, credentialAnswer{Credential: c, Secret: generated, PreviousExpiresAt: &expires})
}

// decodeSecret is decode for a body that carries secrets: a syntax error's
// answer says where, not which character, so that no piece of a secret
// comes back in an error.
func (a *API) decodeSecret(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	return redactSyntax(decodeJSON(body, v))
}

// redactSyntax replaces the message of a malformed-JSON answer (which
// quotes the offending character) with one that does not.
func redactSyntax(err error) error {
	var ce *clientError
	if errors.As(err, &ce) && errors.Is(ce.kind, errBadRequest) {
		return badRequest("request body is not a valid JSON object")
	}
	return err
}
