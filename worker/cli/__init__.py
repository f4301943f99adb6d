"""The worker's commands, which `dropimport` finds by their entry points (setup.cfg)."""

from .exports import export
from .history import contacts, imports
from .process import health, status, worker
from .templates import template

__all__ = ["contacts", "export", "health", "imports", "status", "template", "worker"]
