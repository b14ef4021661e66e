"""Latency measurements: the report schema, the aggregator server and store, statistics, the host
runner and the FreeNet-vs-baselines comparison."""
