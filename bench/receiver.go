package bench

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// receivers are the endpoints the deliveries go to: one HTTP server on n
// loopback listeners (n distinct endpoints as herald sees them, since it
// pools connections and bounds concurrency per host and port). A request
// to /s/<sub> carrying event <n> (the "video_id" of the events the
// harness publishes) is delivery (sub, n) of the current recording.
type receivers struct {
	srv  *http.Server
	urls []string
	rec  atomic.Pointer[recording]
	bufs sync.Pool
}

func newReceivers(n int) (*receivers, error) {
	r := &receivers{bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			r.close()
			return nil, err
		}
		r.urls = append(r.urls, "http://"+ln.Addr().String())
		go func() { _ = r.srv.Serve(ln) }()
	}
	return r, nil
}

// url is the endpoint of subscription sub.
func (r *receivers) url(sub int) string {
	return fmt.Sprintf("%s/s/%d", r.urls[sub%len(r.urls)], sub)
}

func (r *receivers) close() { _ = r.srv.Close() }

// record starts a new recording of subs × events deliveries whose times
// count from t0.
func (r *receivers) record(subs, events int, t0 time.Time) *recording {
	rec := &recording{events: events, t0: t0, first: make([]atomic.Int64, subs*events), done: make(chan struct{}), want: int64(subs * events)}
	r.rec.Store(rec)
	return rec
}

var videoID = []byte(`"video_id":"`)

func (r *receivers) serve(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	buf := r.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	_, err := io.Copy(buf, io.LimitReader(req.Body, 1<<20))
	body := buf.Bytes()
	sub, n := -1, -1
	if s, ok := strings.CutPrefix(req.URL.Path, "/s/"); ok {
		sub, _ = strconv.Atoi(s)
	}
	if i := bytes.Index(body, videoID); i >= 0 {
		rest := body[i+len(videoID):]
		if j := bytes.IndexByte(rest, '"'); j > 0 {
			n, _ = strconv.Atoi(string(rest[:j]))
		}
	}
	r.bufs.Put(buf)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if rec := r.rec.Load(); rec != nil {
		rec.add(sub, n, now)
	}
	w.WriteHeader(http.StatusNoContent)
}

// recording keeps the first receipt of every delivery of one measurement.
type recording struct {
	events int
	t0     time.Time
	first  []atomic.Int64 // nanoseconds after t0, +1; 0 = not yet
	want   int64
	got    atomic.Int64 // distinct deliveries
	dups   atomic.Int64 // repeated receipts
	stray  atomic.Int64 // requests that are not deliveries of this recording
	done   chan struct{}
}

func (rec *recording) add(sub, n int, at time.Time) {
	i := sub*rec.events + n
	if sub < 0 || n < 0 || n >= rec.events || i >= len(rec.first) {
		rec.stray.Add(1)
		return
	}
	if !rec.first[i].CompareAndSwap(0, int64(at.Sub(rec.t0))+1) {
		rec.dups.Add(1)
		return
	}
	if rec.got.Add(1) == rec.want {
		close(rec.done)
	}
}

// wait returns once every delivery has arrived, or fails after timeout.
func (rec *recording) wait(timeout time.Duration) error {
	select {
	case <-rec.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%d of %d deliveries arrived within %s; missing: %s", rec.got.Load(), rec.want, timeout, rec.missing(5))
	}
}

// missing names up to n deliveries (subscription/event) not yet arrived.
func (rec *recording) missing(n int) string {
	var out []string
	for i := range rec.first {
		if rec.first[i].Load() == 0 {
			if len(out) == n {
				out = append(out, "…")
				break
			}
			out = append(out, fmt.Sprintf("%d/%d", i/rec.events, i%rec.events))
		}
	}
	return strings.Join(out, ", ")
}

// last is when the last delivery arrived, after t0.
func (rec *recording) last() time.Duration {
	var last int64
	for i := range rec.first {
		last = max(last, rec.first[i].Load())
	}
	return time.Duration(last - 1)
}

// latencies are the publish→receipt times of every delivery that arrived,
// sorted; sent[n] is when event n was published, after t0.
func (rec *recording) latencies(sent []time.Duration) []time.Duration {
	lat := make([]time.Duration, 0, len(rec.first))
	for i := range rec.first {
		if at := rec.first[i].Load(); at != 0 {
			lat = append(lat, time.Duration(at-1)-sent[i%rec.events])
		}
	}
	slices.Sort(lat)
	return lat
}

// quantile of sorted durations, in milliseconds.
func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}
