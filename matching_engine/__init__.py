"""The service runtime around the pure matching core.

This package holds everything that does IO around the book: the sequencer that owns it, the
write-ahead journal with group commit, recovery from snapshot plus replay, the read models,
circuit breakers, operating modes, rate limiting and metrics. The core itself (instruments,
orders, price levels, the book and the engine that turns commands into events) lives in
``matching_engine.core``; it is imported from here and never imports anything back.
"""

__version__ = "0.1.0"
