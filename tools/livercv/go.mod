// livercv, the Go receiver of the live fan-out benchmark (`make tools-livercv`,
// `python -m bench --scenario live --receiver go`). A module of its own so its dependencies
// never move the other tools'.
module elearn/tools/livercv

go 1.24.6

require (
	google.golang.org/grpc v1.76.0
	google.golang.org/protobuf v1.36.10
)

require (
	golang.org/x/net v0.42.0 // indirect
	golang.org/x/sys v0.34.0 // indirect
	golang.org/x/text v0.27.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250804133106-a7a43d27e69b // indirect
)
