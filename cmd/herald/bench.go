package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/herald-webhooks/herald/bench"
)

// benchCmd runs `herald bench`: the scenarios of package bench against
// herald processes this binary starts, each beside the bare baseline.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "baseline-worker" {
		// The baseline's process, started by the harness itself.
		return bench.RunBaselineWorker(ctx, args[1:], stderr)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herald bench [--scenarios a,b] [--scale F] [--json] [--dir D]\n\nScenarios:\n%s\nFlags:\n", bench.Describe())
		fs.PrintDefaults()
	}
	scenarios := fs.String("scenarios", strings.Join(bench.Scenarios(), ","), "comma-separated scenarios to run")
	scale := fs.Float64("scale", 1, "multiply every scenario's size (events, subscriptions, durations) by this")
	asJSON := fs.Bool("json", false, "print the results as one JSON document on stdout (summary lines go to stderr)")
	dir := fs.String("dir", "", "keep the processes' data directories here (default: a temporary directory, removed afterwards)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if fs.NArg() > 0 {
		return usageError("herald bench takes no arguments, got " + strings.Join(fs.Args(), " "))
	}
	if *scale <= 0 {
		return usageError("--scale must be positive")
	}
	opts := bench.Options{Scale: *scale, Dir: *dir, Progress: stderr}
	for _, s := range strings.Split(*scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			opts.Scenarios = append(opts.Scenarios, s)
		}
	}
	lines := stdout
	if *asJSON {
		lines = stderr
	}
	started := time.Now()
	var results []bench.Result
	err := bench.Run(ctx, opts, func(r bench.Result) {
		results = append(results, r)
		fmt.Fprintln(lines, bench.Line(r))
	})
	if err != nil {
		return err
	}
	if *asJSON {
		doc, err := bench.JSON(results, opts, started)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", doc)
	}
	return nil
}
