package webhook_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/herald-webhooks/herald/webhook"
)

// The benchmarks reuse one buffer, as a dispatcher worker would.

func BenchmarkAppendForm(b *testing.B) {
	data := json.RawMessage(videoCreated)
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = webhook.AppendForm(buf[:0], "video-created", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	data := json.RawMessage(videoCreated)
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = webhook.AppendJSON(buf[:0], "video-created", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	secret := mustSecret(b, exampleSecret)
	body, err := webhook.AppendJSON(nil, "video-created", json.RawMessage(videoCreated))
	if err != nil {
		b.Fatal(err)
	}
	ts := time.Unix(1_700_000_000, 0)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		_ = secret.Sign("dlv_01HZX3J6Q9V5T2", ts, body)
	}
}

func BenchmarkVerify(b *testing.B) {
	secret := mustSecret(b, exampleSecret)
	body, err := webhook.AppendJSON(nil, "video-created", json.RawMessage(videoCreated))
	if err != nil {
		b.Fatal(err)
	}
	ts := time.Unix(1_700_000_000, 0)
	sig := secret.Sign("dlv_01HZX3J6Q9V5T2", ts, body)
	secrets := []webhook.Secret{secret}
	b.ReportAllocs()
	for b.Loop() {
		if err := webhook.Verify(secrets, "dlv_01HZX3J6Q9V5T2", "1700000000", sig, body, ts, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignatureHeaderRotated signs with two secrets, as during a
// rotation.
func BenchmarkSignatureHeaderRotated(b *testing.B) {
	secrets := []webhook.Secret{mustSecret(b, exampleSecret), mustSecret(b, exampleSecret)}
	body, err := webhook.AppendJSON(nil, "video-created", json.RawMessage(videoCreated))
	if err != nil {
		b.Fatal(err)
	}
	ts := time.Unix(1_700_000_000, 0)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		_ = webhook.SignatureHeader(secrets, "dlv_01HZX3J6Q9V5T2", ts, body)
	}
}
