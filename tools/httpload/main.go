// httpload: the bench's open-loop HTTP/1.1 load generator (`python -m bench --driver httpload`,
// bench/vegeta.py runs it; `make tools-httpload` builds it).
//
// vegeta does the same job, but on this 2-core box it spends 70-90 µs of CPU per call
// (net/http, a result encoder, worker bookkeeping), a share of the machine the stack under test
// should have: at 2,500 calls/s that is a fifth of a core. This tool sends the same pre-built
// requests (vegeta's JSON target format, cycled in order) with fasthttp's client at a fixed
// rate over keep-alive connections and keeps one small record per call, for about a fifth of
// that CPU.
//
// Open loop: call i is due at start + i/rate whatever the server does. A call waits for a free
// connection when all are busy (up to -connections) and its latency counts from when it was
// due, so a slow server shows up as latency rather than as a slower arrival rate (no
// coordinated omission).
//
// Output: vegeta's CSV columns (start ns since the epoch, status, latency ns, bytes out,
// bytes in, error), one row per call, in due order; bench.vegeta.merge_csv reads them.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

type target struct {
	Method string              `json:"method"`
	URL    string              `json:"url"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
}

type prepared struct {
	method, uri string
	headers     [][2]string
	body        []byte
}

// The scheduler's coarsest wake-up interval (see attack).
const tick = time.Millisecond

type result struct {
	due      int64 // ns since the epoch
	latency  int64 // ns, from due to the response's end
	code     int
	bytesOut int
	bytesIn  int
	err      string
}

func main() {
	targetsPath := flag.String("targets", "", "vegeta JSON-lines targets, cycled in order")
	rate := flag.Float64("rate", 0, "calls per second")
	duration := flag.Duration("duration", 0, "how long to send")
	timeout := flag.Duration("timeout", 10*time.Second, "per-call deadline, from its due time")
	connections := flag.Int("connections", 2000, "keep-alive connections at most")
	output := flag.String("output", "", "CSV results (vegeta's columns)")
	flag.Parse()
	if *targetsPath == "" || *rate <= 0 || *duration <= 0 || *output == "" {
		fmt.Fprintln(os.Stderr, "httpload: -targets, -rate, -duration and -output are required")
		os.Exit(2)
	}
	targets, host, err := load(*targetsPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpload:", err)
		os.Exit(2)
	}
	client := &fasthttp.HostClient{
		Addr:                          host,
		MaxConns:                      *connections,
		MaxConnWaitTimeout:            *timeout,
		ReadTimeout:                   *timeout,
		WriteTimeout:                  *timeout,
		MaxIdleConnDuration:           time.Minute,
		DisableHeaderNamesNormalizing: true,
		NoDefaultUserAgentHeader:      true,
	}
	results := attack(client, targets, *rate, *duration, *timeout)
	if err := write(*output, results); err != nil {
		fmt.Fprintln(os.Stderr, "httpload:", err)
		os.Exit(1)
	}
}

func load(path string) ([]prepared, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	var out []prepared
	host := ""
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		var t target
		if err := json.Unmarshal(scanner.Bytes(), &t); err != nil {
			return nil, "", fmt.Errorf("target %d: %w", len(out)+1, err)
		}
		body, err := base64.StdEncoding.DecodeString(t.Body)
		if err != nil {
			return nil, "", fmt.Errorf("target %d body: %w", len(out)+1, err)
		}
		rest, ok := strings.CutPrefix(t.URL, "http://")
		if !ok {
			return nil, "", fmt.Errorf("target %d: only http:// URLs", len(out)+1)
		}
		h, _, _ := strings.Cut(rest, "/")
		if host == "" {
			host = h
		} else if h != host {
			return nil, "", errors.New("every target must name the same host:port")
		}
		p := prepared{method: t.Method, uri: t.URL, body: body}
		for name, values := range t.Header {
			for _, v := range values {
				p.headers = append(p.headers, [2]string{name, v})
			}
		}
		out = append(out, p)
	}
	if err := scanner.Err(); err != nil {
		return nil, "", err
	}
	if len(out) == 0 {
		return nil, "", errors.New("no targets")
	}
	return out, host, nil
}

type job struct {
	i   int
	due time.Time
}

func attack(client *fasthttp.HostClient, targets []prepared, rate float64,
	duration, timeout time.Duration) []result {
	total := int(rate * duration.Seconds())
	results := make([]result, total)
	interval := float64(time.Second) / rate
	// Long-lived workers: a goroutine per call would grow a fresh stack through fasthttp's
	// frames every time. The channel is unbuffered, so a send succeeds only when a worker is
	// idle; when none is, one more starts (as vegeta adds workers), so a slow server never
	// delays the arrivals.
	jobs := make(chan job)
	var wg sync.WaitGroup
	worker := func() {
		defer wg.Done()
		for j := range jobs {
			results[j.i] = call(client, &targets[j.i%len(targets)], j.due, timeout)
		}
	}
	start := time.Now()
	dueAt := func(i int) time.Time { return start.Add(time.Duration(float64(i) * interval)) }
	for i := 0; i < total; {
		now := time.Now()
		for ; i < total && !dueAt(i).After(now); i++ {
			j := job{i, dueAt(i)}
			select {
			case jobs <- j:
			default:
				wg.Add(1)
				go worker()
				jobs <- j
			}
		}
		if i < total {
			// Wake at most once per tick: each wake-up is a futex and an epoll round on the
			// shared box. A call still counts from its own due time, so sending it up to a tick
			// late shows in its latency rather than being hidden.
			next := dueAt(i)
			if next.Sub(now) < tick {
				next = now.Add(tick)
			}
			time.Sleep(time.Until(next))
		}
	}
	close(jobs)
	wg.Wait()
	return results
}

func call(client *fasthttp.HostClient, t *prepared, due time.Time, timeout time.Duration) result {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(t.method)
	req.SetRequestURI(t.uri)
	for _, h := range t.headers {
		req.Header.Set(h[0], h[1])
	}
	req.SetBodyRaw(t.body)
	err := client.DoDeadline(req, resp, due.Add(timeout))
	r := result{due: due.UnixNano(), latency: int64(time.Since(due)), bytesOut: len(t.body)}
	if err != nil {
		r.err = err.Error()
		return r
	}
	r.code = resp.StatusCode()
	r.bytesIn = len(resp.Body())
	return r
}

func write(path string, results []result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f) // buffered itself
	row := make([]string, 6)
	for _, r := range results {
		row[0] = strconv.FormatInt(r.due, 10)
		row[1] = strconv.Itoa(r.code)
		row[2] = strconv.FormatInt(r.latency, 10)
		row[3] = strconv.Itoa(r.bytesOut)
		row[4] = strconv.Itoa(r.bytesIn)
		row[5] = r.err
		if err := w.Write(row); err != nil {
			f.Close()
			return err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
