"""Support kit for `dev`, the tests and the benchmarks (never used by the bridge or the worker).

`processes` (child processes, a bridge-and-workers stack), `ready` (waiting for HTTP 200),
`offsets` (consumer-group and end offsets), `brokers` (a Kafka to measure against), `machine`
(how busy the machine a benchmark ran on was, the commit measured), `payloads` (webhooks signed
as each provider would), `charts` (matplotlib, imported only when drawing).
"""
