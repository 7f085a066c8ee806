// httpload, the bench's open-loop HTTP/1.1 and gRPC load generator (`make tools-httpload`,
// `python -m bench --driver httpload`). A module of its own so its dependencies never move the
// other tools'.
module elearn/tools/httpload

go 1.26.0

require (
	github.com/valyala/fasthttp v1.79.0
	google.golang.org/grpc v1.76.0
	google.golang.org/protobuf v1.36.10
)

require (
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/molecule-man/go-brrr v1.3.1 // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250804133106-a7a43d27e69b // indirect
)
