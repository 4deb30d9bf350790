"""Benchmarks, load tests and chaos experiments. Traffic goes to 127.0.0.1 only."""
