package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildHerald compiles the real binary once per test run.
var buildHerald = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "herald-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "herald")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// proc is a herald subprocess whose JSON log lines are read as they come.
type proc struct {
	cmd   *exec.Cmd
	lines chan map[string]any
	done  chan error
}

func startHerald(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	bin, err := buildHerald()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan map[string]any, 1024), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				select {
				case p.lines <- line:
				default:
				}
			}
			t.Log(sc.Text())
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	return p
}

// waitLog waits for a log line with message msg and returns it.
func (p *proc) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line := <-p.lines:
			if line["message"] == msg {
				return line
			}
		case err := <-p.done:
			t.Fatalf("herald exited (%v) before logging %q", err, msg)
		case <-timeout:
			t.Fatalf("no log line %q within 30s", msg)
		}
	}
}

// TestServeEndToEnd runs the real binary: serve, subscribe with the API,
// publish with `herald publish`, receive the notification, then Ctrl-C.
func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	got := make(chan *http.Request, 1)
	bodies := make(chan string, 1)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		got <- r
	}))
	defer rc.Close()

	dir := t.TempDir()
	env := []string{
		"HERALD_DATA_DIR=" + dir, "HERALD_HTTP_ADDR=127.0.0.1:0", "HERALD_NATS_LISTEN=127.0.0.1:0",
		"HERALD_ALLOW_PRIVATE_TARGETS=true", "HERALD_LOG_FORMAT=json", "HERALD_ADMIN_TOKEN=",
	}
	p := startHerald(t, env, "serve")
	natsURL := p.waitLog(t, "embedded JetStream server listening")["nats"].(string)
	apiURL := p.waitLog(t, "HTTP API listening")["addr"].(string)
	token, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatalf("no generated admin token in the data dir: %v", err)
	}

	body := `{"url":"` + rc.URL + `/hook","events":["video-created"],"format":"form"}`
	req, _ := http.NewRequest("POST", apiURL+"/v1/clouds/acme/subscriptions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create subscription: %d", resp.StatusCode)
	}

	var out, errOut bytes.Buffer
	code := withEnv(t, []string{"HERALD_NATS_URL=" + natsURL}, func() int {
		return run(context.Background(), []string{"publish", "--cloud", "acme", "--type", "video-created", "--id", "cli-1",
			"--data", `{"video_id":"v1","status":"success","encoding_ids":["a","b"]}`}, &out, &errOut)
	})
	if code != 0 {
		t.Fatalf("herald publish exited %d: %s", code, errOut.String())
	}
	var pub struct {
		ID       string `json:"id"`
		Sequence uint64 `json:"sequence"`
	}
	if err := json.Unmarshal(out.Bytes(), &pub); err != nil || pub.ID != "cli-1" || pub.Sequence == 0 {
		t.Fatalf("herald publish printed %q", out.String())
	}

	select {
	case b := <-bodies:
		r := <-got
		if want := "event=video-created&video_id=v1&status=success&encoding_ids[0]=a&encoding_ids[1]=b"; b != want {
			t.Errorf("body %s, want %s", b, want)
		}
		if r.URL.Path != "/hook" || r.Header.Get("Herald-Event") != "video-created" {
			t.Errorf("request %s with herald-event %q", r.URL.Path, r.Header.Get("Herald-Event"))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no notification within 15s")
	}

	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("herald serve exited with %v after Ctrl-C, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("herald serve did not stop within 30s of Ctrl-C")
	}
}

// withEnv runs fn with env set, for run() calls that read HERALD_*.
func withEnv(t *testing.T, env []string, fn func() int) int {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return fn()
}

func TestCommandLineErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		env  []string
		code int
		want string
	}{
		{"no command", nil, nil, 2, "Usage"},
		{"unknown command", []string{"frobnicate"}, nil, 2, `unknown command "frobnicate"`},
		{"publish without cloud", []string{"publish", "--type", "video-created"}, nil, 2, "needs --cloud and --type"},
		{"publish with a stray argument", []string{"publish", "--cloud", "a", "--type", "t", "extra"}, nil, 2, `unexpected argument "extra"`},
		{"dispatch without a NATS URL", []string{"dispatch"}, []string{"HERALD_NATS_URL="}, 2, "needs HERALD_NATS_URL"},
		{"bad log level", []string{"dispatch"}, []string{"HERALD_NATS_URL=nats://127.0.0.1:1", "HERALD_LOG_LEVEL=loud"}, 1, "HERALD_LOG_LEVEL"},
		{"bad duration", []string{"serve"}, []string{"HERALD_ATTEMPT_TIMEOUT=soon"}, 1, "ATTEMPT_TIMEOUT"},
		{"log retention too short", []string{"serve"}, []string{"HERALD_LOG_RETENTION=10m"}, 1, "HERALD_LOG_RETENTION must be at least 1h"},
		{"park threshold under a second", []string{"serve"}, []string{"HERALD_PARK_AFTER=500ms"}, 1, "HERALD_PARK_AFTER"},
		{"memory target that is not a size", []string{"serve"}, []string{"HERALD_MEMORY_TARGET=lots"}, 1, "MEMORY_TARGET"},
		{"memory target too small", []string{"serve"}, []string{"HERALD_MEMORY_TARGET=1m"}, 1, "HERALD_MEMORY_TARGET must be 0 (off) or at least 32MiB"},
		{"invalid event is rejected before connecting", []string{"publish", "--cloud", "a", "--type", "video-created", "--data", `{"video_id":"v","status":"meh"}`}, []string{"HERALD_NATS_URL=nats://127.0.0.1:1"}, 1, "event rejected: data.status"},
		{"listen with a bad fail rate", []string{"listen", "--fail-rate", "2"}, nil, 2, "fail"},
		{"bench with an unknown scenario", []string{"bench", "--scenarios", "speed"}, nil, 1, `unknown scenario "speed"`},
		{"bench with a bad scale", []string{"bench", "--scale", "0"}, nil, 2, "--scale must be positive"},
		{"version", []string{"version"}, nil, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := withEnv(t, c.env, func() int { return run(context.Background(), c.args, &out, &errOut) })
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr %s", code, c.code, errOut.String())
			}
			if !strings.Contains(errOut.String()+out.String(), c.want) {
				t.Errorf("output %q does not say %q", errOut.String()+out.String(), c.want)
			}
		})
	}
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
