"""The dramatiq runtime of the worker: its actors and middleware (dead letters, log context,
metrics, heartbeat) and the interpreter's tuning."""
