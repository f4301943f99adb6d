"""The dropimport program: its command, `run`, and what agent and worker share at run time.

The account registry (accounts.py), logging (logs.py), health probes (health.py) and atomic
JSON writes (atomic.py) serve both processes; the contract between them (JSON Schemas, file
event, spool layout, settings) is `schemas/`'s.
"""
