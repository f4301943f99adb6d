"""The benchmark's one error."""


class BenchError(Exception):
    """A load went wrong: the figures would mean nothing."""
