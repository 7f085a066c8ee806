// livercv: the live fan-out benchmark's receiver in Go (bench/live_receivers_go.py runs it).
//
// The Python receivers parse every delivery with protobuf in Python, which costs the shared
// 2-core box as much CPU as the service under test; this one holds the same Subscribe streams
// and reads only the fields the bench needs (sequence, server_time, welcome.last_sequence,
// broadcast.text, notice kind and count) with protowire, so the service gets the CPU.
//
// Input: a JSON plan on stdin's first line (targets, streams [[token, session_id]...],
// channels, seconds). Output: "ready N" once every stream is welcomed, then, after a "stop"
// line on stdin (or stdin closed) and a quiet second, or after `seconds`, one JSON tally line.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

const subscribe = "/elearn.live.v1.LiveService/Subscribe"
const noticeEventsDropped = 1

// rawCodec passes bytes through: requests are built by hand, responses parsed by hand.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	p := v.(*[]byte)
	*p = append((*p)[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

type plan struct {
	Targets  []string    `json:"targets"`
	Streams  [][2]string `json:"streams"`
	Channels int         `json:"channels"`
	Seconds  float64     `json:"seconds"`
}

type tally struct {
	mu         sync.Mutex
	Deliveries int             `json:"deliveries"`
	Gaps       int64           `json:"gaps"`
	Duplicates int             `json:"duplicates"`
	Dropped    int64           `json:"dropped"`
	Errors     map[string]int  `json:"errors"`
	Streams    int             `json:"streams"`
	CPUSeconds float64         `json:"cpu_seconds"`
	LatencyUS  []int64         `json:"latency_us"`
	PublishUS  []int64         `json:"publish_us"`
	ByTargetUS map[int][]int64 `json:"by_target_us"`
}

type event struct {
	sequence    int64
	serverTime  int64 // ns, 0 if absent
	kind        protowire.Number
	lastSeq     int64
	text        []byte
	noticeKind  int64
	noticeCount int64
}

func parseTimestamp(b []byte) int64 {
	var secs, nanos int64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		b = b[n:]
		if typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0
			}
			b = b[m:]
			if num == 1 {
				secs = int64(v)
			} else if num == 2 {
				nanos = int64(v)
			}
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0
		}
		b = b[m:]
	}
	return secs*1e9 + nanos
}

// fields calls visit for each top-level field of b (varints as value, bytes as payload).
func fields(b []byte, visit func(num protowire.Number, v uint64, payload []byte)) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return false
			}
			visit(num, v, nil)
			b = b[m:]
		case protowire.BytesType:
			p, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			visit(num, 0, p)
			b = b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return false
			}
			b = b[m:]
		}
	}
	return true
}

func parseEvent(b []byte) (e event) {
	fields(b, func(num protowire.Number, v uint64, p []byte) {
		switch {
		case num == 1:
			e.sequence = int64(v)
		case num == 3:
			e.serverTime = parseTimestamp(p)
		case num == 4:
			e.kind = num
			fields(p, func(n protowire.Number, v uint64, _ []byte) {
				if n == 4 {
					e.lastSeq = int64(v)
				}
			})
		case num == 5:
			e.kind = num
			fields(p, func(n protowire.Number, _ uint64, q []byte) {
				if n == 3 {
					e.text = q
				}
			})
		case num == 15:
			e.kind = num
			fields(p, func(n protowire.Number, v uint64, _ []byte) {
				if n == 1 {
					e.noticeKind = int64(v)
				} else if n == 3 {
					e.noticeCount = int64(v)
				}
			})
		case num >= 4 && num <= 16:
			e.kind = num
		}
	})
	return e
}

func subscribeRequest(sessionID string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendString(b, sessionID)
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func main() {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		fmt.Fprintln(os.Stderr, "livercv: no plan on stdin")
		os.Exit(2)
	}
	var p plan
	if err := json.Unmarshal(line, &p); err != nil {
		fmt.Fprintln(os.Stderr, "livercv: bad plan:", err)
		os.Exit(2)
	}
	if p.Channels < 1 {
		p.Channels = 1
	}
	conns := make([]*grpc.ClientConn, p.Channels)
	for i := range conns {
		conns[i], err = grpc.NewClient(p.Targets[i%len(p.Targets)],
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
		if err != nil {
			fmt.Fprintln(os.Stderr, "livercv:", err)
			os.Exit(2)
		}
	}
	t := &tally{Errors: map[string]int{}, ByTargetUS: map[int][]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	var opened, deliveries atomic.Int64
	allOpen := make(chan struct{})
	var once sync.Once
	total := int64(len(p.Streams))
	opening := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i, s := range p.Streams {
		wg.Add(1)
		go func(index int, token, sid string) {
			defer wg.Done()
			slot := index % len(conns)
			target := slot % len(p.Targets)
			var lat, pub []int64
			var last, gaps, dropped int64
			dups := 0
			errName := ""
			defer func() {
				t.mu.Lock()
				t.Deliveries += len(lat)
				t.Gaps += gaps
				t.Duplicates += dups
				t.Dropped += dropped
				t.LatencyUS = append(t.LatencyUS, lat...)
				t.PublishUS = append(t.PublishUS, pub...)
				t.ByTargetUS[target] = append(t.ByTargetUS[target], lat...)
				if errName != "" {
					t.Errors[errName]++
				}
				t.mu.Unlock()
			}()
			opening <- struct{}{}
			welcomed := false
			sctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
			desc := &grpc.StreamDesc{ServerStreams: true}
			stream, err := conns[slot].NewStream(sctx, desc, subscribe, grpc.WaitForReady(true))
			if err == nil {
				req := subscribeRequest(sid)
				err = stream.SendMsg(&req)
			}
			if err == nil {
				err = stream.CloseSend()
			}
			var msg []byte
			for err == nil {
				if err = stream.RecvMsg(&msg); err != nil {
					break
				}
				fields(msg, func(num protowire.Number, _ uint64, payload []byte) {
					if num != 1 {
						return
					}
					e := parseEvent(payload)
					if e.kind == 4 {
						if !welcomed {
							welcomed = true
							<-opening
							last = e.lastSeq
							if opened.Add(1) == total {
								once.Do(func() { close(allOpen) })
							}
						}
						return
					}
					if e.sequence != 0 {
						if e.sequence <= last {
							dups++
							return
						}
						if last != 0 && e.sequence != last+1 {
							gaps += e.sequence - last - 1
						}
						last = e.sequence
					}
					if e.kind == 5 && len(e.text) > 1 && e.text[0] == 't' {
						now := time.Now().UnixNano()
						sent, perr := strconv.ParseInt(string(e.text[1:]), 10, 64)
						if perr != nil {
							return
						}
						lat = append(lat, max(1, (now-sent)/1000))
						if e.serverTime != 0 {
							pub = append(pub, max(1, (e.serverTime-sent)/1000))
						}
						deliveries.Add(1)
					} else if e.kind == 15 && e.noticeKind == noticeEventsDropped {
						dropped += e.noticeCount
					}
				})
			}
			if !welcomed {
				<-opening
			}
			if ctx.Err() == nil && err != nil && err.Error() != "EOF" {
				errName = grpcCode(err)
			}
		}(i, s[0], s[1])
	}
	deadline := time.After(time.Duration(p.Seconds * float64(time.Second)))
	select {
	case <-allOpen:
	case <-time.After(120 * time.Second):
		t.Errors["NOT_ALL_OPEN"] = int(total - opened.Load())
	}
	t.Streams = int(opened.Load())
	fmt.Printf("ready %d\n", t.Streams)
	start := cpuSeconds()
	stop := make(chan struct{})
	go func() {
		for {
			l, err := in.ReadString('\n')
			if err != nil || l == "stop\n" {
				close(stop)
				return
			}
		}
	}()
	// Until `seconds`, or once stopped, until deliveries stayed quiet for a second.
	tick := time.NewTicker(250 * time.Millisecond)
	seen, quietSince, stopped := int64(-1), time.Now(), false
loop:
	for {
		select {
		case <-deadline:
			break loop
		case <-stop:
			stopped = true
			stop = nil
		case <-tick.C:
			if d := deliveries.Load(); d != seen {
				seen, quietSince = d, time.Now()
			} else if stopped && time.Since(quietSince) >= time.Second {
				break loop
			}
		}
	}
	t.CPUSeconds = cpuSeconds() - start
	cancel()
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	out, _ := json.Marshal(t)
	os.Stdout.Write(append(out, '\n'))
}
