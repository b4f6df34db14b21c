package herald

import (
	"fmt"
	"time"
)

// Retry strategies (SPEC §4).
const (
	StrategyExponential = "exponential"
	StrategyLinear      = "linear"
)

// Retry defaults and bounds.
const (
	DefaultInitialDelay = 5 * time.Second
	DefaultMaxDelay     = time.Hour
	DefaultWindow       = 24 * time.Hour
	DefaultDelayDelta   = 5 * time.Second
	DefaultMaxRetries   = 50

	MinInitialDelay = time.Second
	MaxInitialDelay = time.Hour
	MaxMaxDelay     = 24 * time.Hour
	MaxWindow       = 7 * 24 * time.Hour
	MinDelayDelta   = time.Second
	MaxDelayDelta   = time.Hour
	MaxMaxRetries   = 500

	// Jitter is the ± fraction applied to exponential delays.
	Jitter = 0.10
)

// RetryPolicy says when a failed delivery is tried again. The zero value
// with WithDefaults applied is the exponential default: 5 s doubling to 1 h,
// for 24 h.
type RetryPolicy struct {
	Strategy string `json:"strategy"`
	// Exponential.
	InitialDelay Duration `json:"initial_delay,omitempty"`
	MaxDelay     Duration `json:"max_delay,omitempty"`
	Window       Duration `json:"window,omitempty"`
	// Linear.
	DelayDelta Duration `json:"delay_delta,omitempty"`
	MaxRetries *int     `json:"max_retries,omitempty"`
}

// WithDefaults returns p with its strategy's unset fields filled in.
func (p RetryPolicy) WithDefaults() RetryPolicy {
	if p.Strategy == "" {
		p.Strategy = StrategyExponential
	}
	switch p.Strategy {
	case StrategyExponential:
		if p.InitialDelay == 0 {
			p.InitialDelay = Duration(DefaultInitialDelay)
		}
		if p.MaxDelay == 0 {
			p.MaxDelay = Duration(max(DefaultMaxDelay, p.InitialDelay.Std()))
		}
		if p.Window == 0 {
			p.Window = Duration(DefaultWindow)
		}
	case StrategyLinear:
		if p.DelayDelta == 0 {
			p.DelayDelta = Duration(DefaultDelayDelta)
		}
		if p.MaxRetries == nil {
			n := DefaultMaxRetries
			p.MaxRetries = &n
		}
	}
	return p
}

// Validate checks a policy that WithDefaults has filled in.
func (p RetryPolicy) Validate() error {
	switch p.Strategy {
	case StrategyExponential:
		if p.DelayDelta != 0 {
			return Invalid("retry.delay_delta", "applies to the linear strategy only")
		}
		if p.MaxRetries != nil {
			return Invalid("retry.max_retries", "applies to the linear strategy only")
		}
		if d := p.InitialDelay.Std(); d < MinInitialDelay || d > MaxInitialDelay {
			return Invalid("retry.initial_delay", fmt.Sprintf("must be between %s and %s", MinInitialDelay, MaxInitialDelay))
		}
		if d := p.MaxDelay.Std(); d < p.InitialDelay.Std() || d > MaxMaxDelay {
			return Invalid("retry.max_delay", fmt.Sprintf("must be between initial_delay and %s", MaxMaxDelay))
		}
		if d := p.Window.Std(); d < p.InitialDelay.Std() || d > MaxWindow {
			return Invalid("retry.window", fmt.Sprintf("must be between initial_delay and %s", MaxWindow))
		}
	case StrategyLinear:
		if p.InitialDelay != 0 || p.MaxDelay != 0 || p.Window != 0 {
			field := "retry.initial_delay"
			if p.InitialDelay == 0 {
				field = "retry.max_delay"
				if p.MaxDelay == 0 {
					field = "retry.window"
				}
			}
			return Invalid(field, "applies to the exponential strategy only")
		}
		if d := p.DelayDelta.Std(); d < MinDelayDelta || d > MaxDelayDelta {
			return Invalid("retry.delay_delta", fmt.Sprintf("must be between %s and %s", MinDelayDelta, MaxDelayDelta))
		}
		if p.MaxRetries == nil || *p.MaxRetries < 0 || *p.MaxRetries > MaxMaxRetries {
			return Invalid("retry.max_retries", fmt.Sprintf("must be between 0 and %d", MaxMaxRetries))
		}
	default:
		return Invalid("retry.strategy", `must be "exponential" or "linear"`)
	}
	return nil
}

// Next decides what follows the failed attempt n (1 for the first try) of a
// delivery whose first attempt started at first, with attempt n failing at
// now. It returns the delay before the next attempt, or ok=false when the
// policy gives up. u, in [0, 1), draws the jitter of exponential delays
// (0.5 for none); callers pass rand.Float64().
//
// Exponential: min(initial_delay × 2^(n-1), max_delay) ± 10 %, giving up
// when the next attempt would start more than window after the first.
// Linear: n × delay_delta, giving up after max_retries retries.
func (p RetryPolicy) Next(n int, first, now time.Time, u float64) (delay time.Duration, ok bool) {
	if n < 1 {
		n = 1
	}
	switch p.Strategy {
	case StrategyLinear:
		if p.MaxRetries == nil || n > *p.MaxRetries {
			return 0, false
		}
		return time.Duration(n) * p.DelayDelta.Std(), true
	default:
		d := p.InitialDelay.Std()
		for i := 1; i < n && d < p.MaxDelay.Std(); i++ {
			d *= 2
		}
		d = min(d, p.MaxDelay.Std())
		d = time.Duration(float64(d) * (1 - Jitter + 2*Jitter*u))
		if now.Add(d).Sub(first) > p.Window.Std() {
			return 0, false
		}
		return d, true
	}
}
