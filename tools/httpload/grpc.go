package main

// gRPC mode: targets whose URL is grpc://host:port/package.Service/Method are sent as unary
// gRPC calls over h2c (grpc-go), the body being the serialized request. The response is
// counted, never decoded: a load tool that parses what it receives measures itself (ghz spent
// about a quarter of its CPU decoding responses the bench never reads, stop 24).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const grpcScheme = "grpc://"

// rawCodec sends the pre-built bytes as they are and keeps only the response's size.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*int)) = data.Len()
	return nil
}

func (rawCodec) Name() string { return "proto" }

var _ encoding.CodecV2 = rawCodec{}

// grpcTarget splits grpc://host:port/pkg.Service/Method into the address and the method path.
func grpcTarget(url string) (host, method string, err error) {
	rest, _ := strings.CutPrefix(url, grpcScheme)
	host, path, ok := strings.Cut(rest, "/")
	if !ok || !strings.Contains(path, "/") {
		return "", "", fmt.Errorf("%q: want grpc://host:port/package.Service/Method", url)
	}
	return host, "/" + path, nil
}

type grpcClient struct {
	conns  []*grpc.ClientConn
	unique uniqueField
}

// uniqueField appends a string field to every request, its value unique per call (prefix and
// call index): protobuf concatenation, so a pre-built body becomes a new request each time,
// as an idempotency key must be.
type uniqueField struct {
	number int
	prefix string
}

func (u uniqueField) apply(body []byte, i int) []byte {
	if u.number <= 0 {
		return body
	}
	value := fmt.Sprintf("%s%d", u.prefix, i)
	out := make([]byte, 0, len(body)+len(value)+8)
	out = append(out, body...)
	out = protowire.AppendTag(out, protowire.Number(u.number), protowire.BytesType)
	return protowire.AppendString(out, value)
}

func dialGRPC(host string, connections int, unique uniqueField) (*grpcClient, error) {
	if connections < 1 {
		return nil, errors.New("-connections must be at least 1")
	}
	c := &grpcClient{unique: unique}
	for range connections {
		// Separate ClientConns, so the calls spread over that many HTTP/2 connections (and
		// Envoy's worker threads) as several browsers' or services' would.
		conn, err := grpc.NewClient(host,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})),
			// Fixed flow-control windows turn off grpc-go's bandwidth probing, a PING with
			// each burst of data read that the edge must answer: small unary answers need no
			// window growth.
			grpc.WithInitialWindowSize(1<<20),
			grpc.WithInitialConnWindowSize(1<<22),
			grpc.WithSharedWriteBuffer(true))
		if err != nil {
			return nil, err
		}
		conn.Connect()
		c.conns = append(c.conns, conn)
	}
	return c, nil
}

func (c *grpcClient) call(t *prepared, i int, due time.Time, timeout time.Duration) result {
	body := c.unique.apply(t.body, i)
	ctx, cancel := context.WithDeadline(metadata.NewOutgoingContext(context.Background(), t.md),
		due.Add(timeout))
	defer cancel()
	received := 0
	err := c.conns[i%len(c.conns)].Invoke(ctx, t.method, &body, &received)
	r := result{due: due.UnixNano(), latency: int64(time.Since(due)), bytesOut: len(body),
		bytesIn: received}
	if err != nil {
		s := status.Convert(err)
		r.code = int(s.Code())
		r.err = s.Message()
		if r.err == "" {
			r.err = s.Code().String()
		}
	}
	return r
}
