// httpload, the bench's open-loop HTTP/1.1 load generator (`make tools-httpload`,
// `python -m bench --driver httpload`). A module of its own so its dependencies never move the
// other tools'.
module elearn/tools/httpload

go 1.26.0

require github.com/valyala/fasthttp v1.79.0

require (
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/molecule-man/go-brrr v1.3.1 // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
)
