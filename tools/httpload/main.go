// httpload: the bench's open-loop load generator for HTTP/1.1 and unary gRPC (`python -m bench
// --driver httpload`, bench/httpload.py runs it; `make tools-httpload` builds it).
//
// vegeta does the same job, but on this 2-core box it spends 70-90 µs of CPU per call
// (net/http, a result encoder, worker bookkeeping), a share of the machine the stack under test
// should have: at 2,500 calls/s that is a fifth of a core. This tool sends the same pre-built
// requests (vegeta's JSON target format, cycled in order) with fasthttp's client over
// keep-alive connections and keeps one small record per call, for about a fifth of that CPU.
//
// Open loop: call i is due at start + i/rate (-arrival fixed) or after exponential gaps of
// mean 1/rate (-arrival poisson, how independent users arrive), whatever the server does. A
// call waits for a free connection when all are busy (up to -connections) and its latency
// counts from when it was due, so a slow server shows up as latency rather than as a slower
// arrival rate (no coordinated omission).
//
// gRPC: targets named grpc://host:port/package.Service/Method carry the serialized request as
// their body and their headers as metadata (grpc.go); the status column is then the gRPC code.
//
// Output: vegeta's CSV columns (start ns since the epoch, status, latency ns, bytes out,
// bytes in, error), one row per call, in due order; bench.httpload.merge_csv reads them.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/metadata"
)

type target struct {
	Method string              `json:"method"`
	URL    string              `json:"url"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
}

type prepared struct {
	method, uri string // for gRPC: the method's path, and no URI
	headers     [][2]string
	md          metadata.MD
	body        []byte
}

// caller sends call i of the run (target t, due at due) and says how it went.
type caller func(t *prepared, i int, due time.Time) result

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
	connections := flag.Int("connections", 2000, "HTTP: keep-alive connections at most")
	// Many, as from a crowd of browsers: with 4, Envoy and the service behind it spent 7-15 %
	// more CPU per exam-rush call than with 16 or 64, which cost the same.
	grpcConnections := flag.Int("grpc-connections", 64, "gRPC: HTTP/2 connections, used in turn")
	uniqueNumber := flag.Int("unique-field", 0,
		"gRPC: append this string field to every request, unique per call (an idempotency key)")
	uniquePrefix := flag.String("unique-prefix", "", "the unique field's prefix (before the call index)")
	arrival := flag.String("arrival", "fixed", "fixed spacing, or poisson (exponential gaps)")
	seed := flag.Int64("seed", 0, "the poisson arrivals' seed")
	output := flag.String("output", "", "CSV results (vegeta's columns)")
	flag.Parse()
	if *targetsPath == "" || *rate <= 0 || *duration <= 0 || *output == "" {
		fmt.Fprintln(os.Stderr, "httpload: -targets, -rate, -duration and -output are required")
		os.Exit(2)
	}
	if *arrival != "fixed" && *arrival != "poisson" {
		fmt.Fprintln(os.Stderr, "httpload: -arrival is fixed or poisson")
		os.Exit(2)
	}
	targets, host, isGRPC, err := load(*targetsPath)
	if err == nil && *uniqueNumber > 0 && !isGRPC {
		err = errors.New("-unique-field applies to gRPC targets only")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpload:", err)
		os.Exit(2)
	}
	var send caller
	if isGRPC {
		client, err := dialGRPC(host, *grpcConnections, uniqueField{*uniqueNumber, *uniquePrefix})
		if err != nil {
			fmt.Fprintln(os.Stderr, "httpload:", err)
			os.Exit(2)
		}
		send = func(t *prepared, i int, due time.Time) result {
			return client.call(t, i, due, *timeout)
		}
	} else {
		send = httpCaller(host, *connections, *timeout)
	}
	offsets := schedule(*rate, *duration, *arrival == "poisson", *seed)
	results := attack(send, targets, offsets)
	if err := write(*output, results); err != nil {
		fmt.Fprintln(os.Stderr, "httpload:", err)
		os.Exit(1)
	}
}

func httpCaller(host string, connections int, timeout time.Duration) caller {
	client := &fasthttp.HostClient{
		Addr:                          host,
		MaxConns:                      connections,
		MaxConnWaitTimeout:            timeout,
		ReadTimeout:                   timeout,
		WriteTimeout:                  timeout,
		MaxIdleConnDuration:           time.Minute,
		DisableHeaderNamesNormalizing: true,
		NoDefaultUserAgentHeader:      true,
	}
	return func(t *prepared, _ int, due time.Time) result {
		return call(client, t, due, timeout)
	}
}

// load reads the targets: every one must name the same host:port, and all are HTTP or all gRPC.
func load(path string) (out []prepared, host string, isGRPC bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", false, err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		var t target
		if err := json.Unmarshal(scanner.Bytes(), &t); err != nil {
			return nil, "", false, fmt.Errorf("target %d: %w", len(out)+1, err)
		}
		p, h, g, err := prepare(t)
		if err != nil {
			return nil, "", false, fmt.Errorf("target %d: %w", len(out)+1, err)
		}
		if len(out) == 0 {
			host, isGRPC = h, g
		} else if h != host || g != isGRPC {
			return nil, "", false, errors.New("every target must name the same scheme and host:port")
		}
		out = append(out, p)
	}
	if err := scanner.Err(); err != nil {
		return nil, "", false, err
	}
	if len(out) == 0 {
		return nil, "", false, errors.New("no targets")
	}
	return out, host, isGRPC, nil
}

func prepare(t target) (p prepared, host string, isGRPC bool, err error) {
	body, err := base64.StdEncoding.DecodeString(t.Body)
	if err != nil {
		return p, "", false, fmt.Errorf("body: %w", err)
	}
	p.body = body
	if strings.HasPrefix(t.URL, grpcScheme) {
		host, p.method, err = grpcTarget(t.URL)
		p.md = metadata.MD{}
		for name, values := range t.Header {
			p.md.Append(name, values...)
		}
		return p, host, true, err
	}
	rest, ok := strings.CutPrefix(t.URL, "http://")
	if !ok {
		return p, "", false, errors.New("only http:// and grpc:// URLs")
	}
	host, _, _ = strings.Cut(rest, "/")
	p.method, p.uri = t.Method, t.URL
	for name, values := range t.Header {
		for _, v := range values {
			p.headers = append(p.headers, [2]string{name, v})
		}
	}
	return p, host, false, nil
}

type job struct {
	i   int
	due time.Time
}

// schedule gives each call's due time as an offset from the start, all within duration.
func schedule(rate float64, duration time.Duration, poisson bool, seed int64) []time.Duration {
	interval := float64(time.Second) / rate
	if !poisson {
		out := make([]time.Duration, int(rate*duration.Seconds()))
		for i := range out {
			out[i] = time.Duration(float64(i) * interval)
		}
		return out
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	out := make([]time.Duration, 0, int(rate*duration.Seconds())+16)
	for t := rng.ExpFloat64() * interval; t < float64(duration); t += rng.ExpFloat64() * interval {
		out = append(out, time.Duration(t))
	}
	return out
}

func attack(send caller, targets []prepared, offsets []time.Duration) []result {
	total := len(offsets)
	results := make([]result, total)
	// Long-lived workers: a goroutine per call would grow a fresh stack through fasthttp's
	// frames every time. The channel is unbuffered, so a send succeeds only when a worker is
	// idle; when none is, one more starts (as vegeta adds workers), so a slow server never
	// delays the arrivals.
	jobs := make(chan job)
	var wg sync.WaitGroup
	worker := func() {
		defer wg.Done()
		for j := range jobs {
			results[j.i] = send(&targets[j.i%len(targets)], j.i, j.due)
		}
	}
	start := time.Now()
	dueAt := func(i int) time.Time { return start.Add(offsets[i]) }
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
