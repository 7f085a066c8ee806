# Two commands matter: `make up` (the whole platform, foreground) and `make test`.
# Everything else is a step those two take, or a tool for engineers.
SHELL := /bin/bash
PY_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
INSTALLED := $(VENV)/.installed
PROTOS := $(shell find proto/elearn -name '*.proto' | sort)
PROTOSET := envoy/elearn.protoset
TOOLS := .tools/bin
GHZ_VERSION ?= v0.120.0
GHZ := $(TOOLS)/ghz
# ghz reports its version as "dev", so a stamp named after the pinned version records it.
GHZ_STAMP := $(TOOLS)/.ghz-$(GHZ_VERSION)
# Jaeger's version is pinned by tools/go.mod (a Go tools module, go.sum included); the binary is
# rebuilt whenever that module changes.
JAEGER := $(TOOLS)/jaeger
# httpload, the open-loop HTTP and gRPC load generator of `bench --driver httpload`, built from
# tools/httpload (its own module: fasthttp and grpc-go pinned there).
HTTPLOAD := $(TOOLS)/httpload
# livercv, the Go receiver of the live fan-out bench (`bench --scenario live --receiver go`),
# built from tools/livercv (its own module: grpc-go and protobuf-go pinned there).
LIVERCV := $(TOOLS)/livercv
# Prometheus and promtool come from Debian's package, unpacked (not installed) into .tools: no
# root needed, and the version is the one apt serves; the stamp names it.
PROMETHEUS_VERSION ?= 2.42.0
PROMETHEUS := $(TOOLS)/prometheus
PROMETHEUS_STAMP := $(TOOLS)/.prometheus-$(PROMETHEUS_VERSION)

.DEFAULT_GOAL := help
.PHONY: help install gen check-gen lint fmt breaking up start stop status test test-unit bench tools tools-ghz tools-jaeger tools-prometheus tools-httpload tools-livercv clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml package.json
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# the checkout and gen/ go on the venv's path: services, tests, alembic and bench import alike
	printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/gen" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/elearn.pth"
	npm install --no-audit --no-fund --silent
	touch $@

install: $(INSTALLED)  ## create .venv and node_modules from the pinned versions

gen: $(INSTALLED)  ## protos -> gen/ (messages, stubs, .pyi) and the Envoy/ghz/grpcurl protoset
	$(PY) -m devstack.protogen

check-gen: gen  ## fail when gen/ or the protoset differ from what the protos produce
	@git diff --exit-code --stat -- gen $(PROTOSET) || { echo "generated code is stale: run 'make gen' and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- gen $(PROTOSET))" || { git status --short -- gen; echo "untracked generated files: run 'make gen' and commit"; exit 1; }

lint: $(INSTALLED)  ## buf lint + format check, ruff, mypy
	$(BUF) lint
	$(BUF) format --diff --exit-code
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: $(INSTALLED)  ## format protos and Python in place
	$(BUF) format -w
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

breaking: $(INSTALLED)  ## buf breaking against main (skipped when main has no protos yet)
	@if git rev-parse --verify -q main >/dev/null && git cat-file -e main:buf.yaml 2>/dev/null; then \
	  $(BUF) breaking --against '.git#branch=main'; \
	else echo "no protos on main yet: nothing to compare"; fi

up: $(INSTALLED)  ## start the whole platform in the foreground; Ctrl-C stops it all
	$(PY) -m devstack up $(ARGS)

start: $(INSTALLED)  ## start the platform detached; returns once everything is SERVING
	$(PY) -m devstack start $(ARGS)

stop: $(INSTALLED)  ## stop what `make start` started, leaving no process behind
	$(PY) -m devstack stop

status: $(INSTALLED)  ## show what the detached stack runs
	$(PY) -m devstack status

test: $(INSTALLED) tools  ## install what tests need (ghz too), lint, check generated code, then unit + integration + edge tests on real servers
	$(MAKE) --no-print-directory check-gen lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(INSTALLED) tools-prometheus  ## only the tests that need no server (promtool checks the alert rules)
	$(PY) -m pytest -m 'not e2e' tests/unit $(PYTEST_ARGS)

bench: $(INSTALLED)  ## run the load scenarios against a running stack (make start first)
	$(PY) -m bench $(ARGS)

tools: tools-ghz tools-jaeger tools-prometheus tools-httpload tools-livercv  ## install ghz, Jaeger, Prometheus, httpload, livercv into .tools/bin (`make test` does it itself; needs Go, apt-get)

tools-ghz:  ## ghz, the gRPC load tool the edge tests drive
	@if [ -x $(GHZ) ] && { [ -f $(GHZ_STAMP) ] || go version -m $(GHZ) 2>/dev/null \
	    | grep -Eq '^\s+mod\s+github.com/bojand/ghz\s+$(GHZ_VERSION)\s'; }; then \
	  touch $(GHZ_STAMP); \
	elif ! command -v go >/dev/null 2>&1; then \
	  echo "make: the edge tests drive Envoy with ghz $(GHZ_VERSION), which is built from source with Go," >&2; \
	  echo "      and 'go' is not on PATH: install Go 1.22 or newer (https://go.dev/dl/), then run make test again." >&2; \
	  exit 1; \
	else \
	  echo "installing ghz $(GHZ_VERSION) into $(TOOLS) (go install, once)"; \
	  rm -f $(TOOLS)/.ghz-*; \
	  GOBIN=$(CURDIR)/$(TOOLS) go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION) && touch $(GHZ_STAMP); \
	fi

tools-jaeger: $(JAEGER)  ## Jaeger v1.75.0 (the trace back-end of `make up ARGS=--observe`), ~4 min once

$(JAEGER): tools/go.mod tools/go.sum
	@command -v go >/dev/null 2>&1 || { \
	  echo "make: Jaeger (traces, --observe and the trace test) is built from source with Go," >&2; \
	  echo "      and 'go' is not on PATH: install Go 1.24 or newer (https://go.dev/dl/)." >&2; \
	  exit 1; }
	@echo "building Jaeger (tools/go.mod) into $(TOOLS) (go build, once)"
	cd tools && go build -o $(CURDIR)/$(JAEGER) github.com/jaegertracing/jaeger/cmd/jaeger
	@touch $@

tools-httpload: $(HTTPLOAD)  ## the open-loop HTTP and gRPC load generator of `bench --driver httpload`

$(HTTPLOAD): tools/httpload/go.mod tools/httpload/go.sum tools/httpload/*.go
	@command -v go >/dev/null 2>&1 || { \
	  echo "make: httpload (bench --driver httpload and its test) is built from source with Go," >&2; \
	  echo "      and 'go' is not on PATH: install Go 1.26 or newer (https://go.dev/dl/)." >&2; \
	  exit 1; }
	@echo "building httpload (tools/httpload/go.mod) into $(TOOLS) (go build)"
	cd tools/httpload && go build -o $(CURDIR)/$(HTTPLOAD) .
	@touch $@

tools-livercv: $(LIVERCV)  ## the Go receiver of the live fan-out bench (`bench --scenario live --receiver go`)

$(LIVERCV): tools/livercv/go.mod tools/livercv/go.sum tools/livercv/*.go
	@command -v go >/dev/null 2>&1 || { \
	  echo "make: livercv (bench --scenario live --receiver go) is built from source with Go," >&2; \
	  echo "      and 'go' is not on PATH: install Go 1.24 or newer (https://go.dev/dl/)." >&2; \
	  exit 1; }
	@echo "building livercv (tools/livercv/go.mod) into $(TOOLS) (go build)"
	cd tools/livercv && go build -o $(CURDIR)/$(LIVERCV) .
	@touch $@

tools-prometheus:  ## Prometheus + promtool from Debian's package, unpacked into .tools/bin
	@if [ -x $(PROMETHEUS) ] && [ -x $(TOOLS)/promtool ] && [ -f $(PROMETHEUS_STAMP) ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make: Prometheus (metrics, --observe and the alert rule tests) is unpacked from Debian's" >&2; \
	  echo "      'prometheus' package, and 'apt-get' is not on PATH: on another system put prometheus" >&2; \
	  echo "      and promtool $(PROMETHEUS_VERSION) into $(TOOLS) and touch $(PROMETHEUS_STAMP)." >&2; \
	  exit 1; \
	else \
	  echo "unpacking Debian's prometheus package into $(TOOLS) (apt-get download, once)"; \
	  rm -rf .tools/prometheus-deb $(TOOLS)/.prometheus-*; mkdir -p .tools/prometheus-deb $(TOOLS); \
	  (cd .tools/prometheus-deb && apt-get download prometheus 2>/dev/null) \
	    || { echo "make: 'apt-get download prometheus' failed (run 'apt-get update' first?)" >&2; exit 1; }; \
	  dpkg-deb -x .tools/prometheus-deb/prometheus_*.deb .tools/prometheus-deb/root; \
	  install -m 755 .tools/prometheus-deb/root/usr/bin/prometheus .tools/prometheus-deb/root/usr/bin/promtool $(TOOLS)/; \
	  $(TOOLS)/promtool --version 2>&1 | grep -q 'version $(PROMETHEUS_VERSION)' \
	    || { echo "make: apt served a prometheus other than $(PROMETHEUS_VERSION): $$($(TOOLS)/promtool --version 2>&1 | head -1)" >&2; exit 1; }; \
	  rm -rf .tools/prometheus-deb; touch $(PROMETHEUS_STAMP); \
	fi

clean:  ## remove the local stack's data and logs
	rm -rf .stack
