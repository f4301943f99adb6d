"""Health checks shared by the agent and the worker: each returns a problem, or None."""

import shutil
import socket
from pathlib import Path

from schemas.settings import redact


def broker_problem(url: str, timeout: float = 3) -> str | None:
    """Why RabbitMQ at `url` cannot be reached, or None."""
    import pika

    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = timeout
    try:
        pika.BlockingConnection(parameters).close()
    except pika.exceptions.AMQPError as error:
        return f"cannot reach RabbitMQ at {redact(url)} ({type(error).__name__})"
    return None


def disk_problem(path: Path, min_free_mb: int) -> str | None:
    """Why the disk holding `path` is too full, or None."""
    free = shutil.disk_usage(path).free // 2**20 if path.exists() else 0
    if free < min_free_mb:
        return f"{free} MB free on the disk of {path}, less than {min_free_mb} MB"
    return None


def port_problem(host: str, port: int, timeout: float = 3) -> str | None:
    """Why nothing accepts connections on host:port, or None."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return f"nothing answers on {host}:{port} ({error.strerror or error})"
    return None
