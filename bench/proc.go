package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the harness started and measures: a herald
// (serve, dispatch) or the baseline worker. Its JSON log lines on stderr
// tell the harness where it listens and when it is ready.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done

	mu     sync.Mutex
	fields map[string]string // string fields of the log lines seen so far
	tail   []string          // its last log lines, for error messages
	seen   map[string]bool   // log messages seen so far
	signal chan struct{}     // closed and replaced at every new message
}

// startProc runs exe with args and env (on top of the harness's own
// environment) and returns once a log line with message ready has been
// written, or fails with the process's last log lines.
func startProc(ctx context.Context, name, exe string, args, env []string, ready string) (*proc, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), fields: map[string]string{}, seen: map[string]bool{}, signal: make(chan struct{})}
	go p.read(stderr)
	if err := p.waitFor(ctx, ready, 60*time.Second); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var keep io.Writer = io.Discard
	if dir := os.Getenv("HERALD_BENCH_LOGS"); dir != "" {
		if f, err := os.OpenFile(filepath.Join(dir, p.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			defer f.Close()
			keep = f
		}
	}
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(keep, line)
		var m map[string]any
		_ = json.Unmarshal([]byte(line), &m)
		p.mu.Lock()
		for k, v := range m {
			if s, ok := v.(string); ok {
				p.fields[k] = s
			}
		}
		if msg, ok := m["message"].(string); ok {
			p.seen[msg] = true
		}
		if len(p.tail) == 20 {
			p.tail = p.tail[1:]
		}
		p.tail = append(p.tail, line)
		close(p.signal)
		p.signal = make(chan struct{})
		p.mu.Unlock()
	}
	p.err = p.cmd.Wait()
	close(p.done)
}

func (p *proc) waitFor(ctx context.Context, msg string, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		ok, signal := p.seen[msg], p.signal
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-signal:
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before %q:\n%s", p.name, p.err, msg, p.lastLines())
		case <-deadline:
			return fmt.Errorf("%s did not log %q within %s:\n%s", p.name, msg, timeout, p.lastLines())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// field is the latest value of a string field in p's log lines.
func (p *proc) field(k string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fields[k]
}

func (p *proc) lastLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// stop ends p with SIGTERM (herald drains), then SIGKILL after 30 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// usage is what the kernel accounts to a process: its peak resident set
// and the CPU time it has used.
type usage struct {
	peakRSS int64   // bytes
	cpu     float64 // seconds, user + system
}

var errNoProc = errors.New("process figures need Linux's /proc")

// measure reads p's peak RSS (VmHWM) and CPU time from /proc.
func (p *proc) measure() (usage, error) {
	pid := p.cmd.Process.Pid
	var u usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, errNoProc
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			u.peakRSS = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, errNoProc
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return u, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, s)
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	u.cpu = (ut + st) / clockTicks
	return u, nil
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100
