package main

import (
	"strings"
	"unicode"

	"google.golang.org/grpc/status"
)

// grpcCode names a status as Python's grpc.StatusCode does (UNAVAILABLE, DEADLINE_EXCEEDED).
func grpcCode(err error) string {
	s, ok := status.FromError(err)
	if !ok {
		return "UNKNOWN"
	}
	var b strings.Builder
	for i, r := range s.Code().String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}
