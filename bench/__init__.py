"""Load driver for the platform: one scenario per workflow, judged against `bench/sla.yaml`.

`python -m bench` (or `make bench ARGS=...`) reads `.stack/endpoints.json`, runs each scenario
in worker processes over long-lived gRPC channels, merges their latency histograms and prints
one table row per scenario with its SLA verdict; the full report goes to `bench/results/`.
See `bench/README.md` for how to add a scenario.
"""
