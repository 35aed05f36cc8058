"""The benchmarks' peers: other engines doing our bridge's and our worker's job, run beside ours.

`gobuild` builds the Go bridge peers (benthos_bridge/); quix_worker.py and plain_worker.py are the
worker's peers (Quix Streams; plain aiokafka + rocksdict).
"""
