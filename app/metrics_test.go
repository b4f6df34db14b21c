package app_test

import (
	"errors"
	"testing"

	"github.com/herald-webhooks/herald/app"
)

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// succeeded reads herald_deliveries_total{outcome="succeeded"} of a.
func succeeded(t testing.TB, a *app.App) float64 {
	t.Helper()
	return metric(t, a, "herald_deliveries_total", "outcome", "succeeded")
}

// outcome reads herald_deliveries_total{outcome=want} of a.
func outcome(t testing.TB, a *app.App, want string) float64 {
	t.Helper()
	return metric(t, a, "herald_deliveries_total", "outcome", want)
}

// metric reads the counter name{label=value} of a (0 when absent).
func metric(t testing.TB, a *app.App, name, label, value string) float64 {
	t.Helper()
	mfs, err := a.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// counter reads an unlabelled counter of a.
func counter(t testing.TB, a *app.App, name string) float64 {
	t.Helper()
	mfs, err := a.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// gauge reads the gauge name whose labels include want (0 when absent).
func gauge(t testing.TB, a *app.App, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := a.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
