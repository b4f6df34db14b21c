package herald_test

import (
	"testing"
	"time"

	"github.com/herald-webhooks/herald"
)

func intp(n int) *int { return &n }

func TestRetryNext(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	expo := herald.RetryPolicy{}.WithDefaults() // 5s doubling to 1h, for 24h
	panda := herald.RetryPolicy{Strategy: "exponential", InitialDelay: herald.Duration(30 * time.Second)}.WithDefaults()
	linear := herald.RetryPolicy{Strategy: "linear"}.WithDefaults() // n × 5s, 50 retries
	for _, c := range []struct {
		name   string
		p      herald.RetryPolicy
		n      int
		now    time.Time
		u      float64
		want   time.Duration
		wantOK bool
	}{
		{"exponential first retry waits initial_delay", expo, 1, t0, 0.5, 5 * time.Second, true},
		{"exponential doubles", expo, 2, t0, 0.5, 10 * time.Second, true},
		{"exponential fifth retry", expo, 5, t0, 0.5, 80 * time.Second, true},
		{"exponential reaches the cap", expo, 11, t0, 0.5, time.Hour, true}, // 5s × 2^10 = 5120s > 1h
		{"exponential stays at the cap", expo, 40, t0.Add(time.Hour), 0.5, time.Hour, true},
		{"exponential huge n does not overflow", expo, 10_000, t0, 0.5, time.Hour, true},
		{"jitter low end is -10%", expo, 1, t0, 0, 4500 * time.Millisecond, true},
		{"jitter high end is +10%", expo, 1, t0, 0.999999, 5499999 * time.Microsecond, true},
		{"custom initial delay", panda, 3, t0, 0.5, 2 * time.Minute, true},
		{"next attempt exactly at the window edge is made", expo, 30, t0.Add(23 * time.Hour), 0.5, time.Hour, true},
		{"next attempt past the window gives up", expo, 30, t0.Add(23*time.Hour + time.Second), 0.5, 0, false},
		{"linear first retry waits delay_delta", linear, 1, t0, 0.5, 5 * time.Second, true},
		{"linear grows by delay_delta", linear, 7, t0, 0.5, 35 * time.Second, true},
		{"linear ignores jitter", linear, 7, t0, 0, 35 * time.Second, true},
		{"linear 50th retry is made", linear, 50, t0, 0.5, 250 * time.Second, true},
		{"linear gives up after attempt 51", linear, 51, t0, 0.5, 0, false},
		{"linear with no retries gives up at once", herald.RetryPolicy{Strategy: "linear", MaxRetries: intp(0)}.WithDefaults(), 1, t0, 0.5, 0, false},
		{"attempt 0 counts as the first", expo, 0, t0, 0.5, 5 * time.Second, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := c.p.Next(c.n, t0, c.now, c.u)
			if ok != c.wantOK || (ok && !near(got, c.want)) {
				t.Errorf("Next(%d) = %s, %v; want %s, %v", c.n, got, ok, c.want, c.wantOK)
			}
		})
	}
}

func near(a, b time.Duration) bool {
	d := a - b
	return d > -time.Millisecond && d < time.Millisecond
}

// TestExponentialScheduleSpans24Hours walks the default schedule with no
// jitter and checks it stops inside the window.
func TestExponentialScheduleSpans24Hours(t *testing.T) {
	p := herald.RetryPolicy{}.WithDefaults()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now, n := t0, 1
	for {
		d, ok := p.Next(n, t0, now, 0.5)
		if !ok {
			break
		}
		now = now.Add(d)
		n++
	}
	if now.Sub(t0) > 24*time.Hour || now.Sub(t0) < 23*time.Hour {
		t.Errorf("last attempt at +%s, want within the last hour of 24h", now.Sub(t0))
	}
	// 5,10,…,2560s (10 retries, 5115s) then hourly: 1 + 10 + 22 attempts.
	if n != 33 {
		t.Errorf("%d attempts in 24h, want 33", n)
	}
}

func TestRetryPolicyValidate(t *testing.T) {
	d := func(s string) herald.Duration { v, _ := time.ParseDuration(s); return herald.Duration(v) }
	for _, c := range []struct {
		name  string
		p     herald.RetryPolicy
		field string
	}{
		{"default is valid", herald.RetryPolicy{}, ""},
		{"linear default is valid", herald.RetryPolicy{Strategy: "linear"}, ""},
		{"unknown strategy", herald.RetryPolicy{Strategy: "fibonacci"}, "retry.strategy"},
		{"initial delay under 1s", herald.RetryPolicy{InitialDelay: d("500ms")}, "retry.initial_delay"},
		{"initial delay over 1h", herald.RetryPolicy{InitialDelay: d("2h")}, "retry.initial_delay"},
		{"max delay under initial", herald.RetryPolicy{InitialDelay: d("1m"), MaxDelay: d("30s")}, "retry.max_delay"},
		{"window over 7 days", herald.RetryPolicy{Window: d("200h")}, "retry.window"},
		{"linear field on exponential", herald.RetryPolicy{DelayDelta: d("5s")}, "retry.delay_delta"},
		{"exponential field on linear", herald.RetryPolicy{Strategy: "linear", Window: d("1h")}, "retry.window"},
		{"negative max retries", herald.RetryPolicy{Strategy: "linear", MaxRetries: intp(-1)}, "retry.max_retries"},
		{"too many retries", herald.RetryPolicy{Strategy: "linear", MaxRetries: intp(501)}, "retry.max_retries"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.p.WithDefaults().Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			ve, ok := err.(*herald.ValidationError)
			if !ok || ve.Field != c.field {
				t.Errorf("error %v, want one on %s", err, c.field)
			}
		})
	}
}
