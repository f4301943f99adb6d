"""The agent's Prometheus metrics, in prometheus_client's default registry.

`dropimport agent` serves them on DROPIMPORT_METRICS_HOST:DROPIMPORT_METRICS_PORT (/metrics).
No metric is labelled by account: with thousands of accounts, the series would be too many;
the logs carry the account.
"""

from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, start_http_server

UPLOADS = Counter("dropimport_uploads_received", "Complete uploads handed over for import.")
UPLOAD_BYTES = Counter("dropimport_upload_bytes_received", "Bytes of the complete uploads.")
#: Reasons: name (no template expects it), rate (hourly limit), size (max_file_size),
#: space (disk full or quota), resume (REST, APPE), incomplete (the transfer was cut).
REFUSED = Counter("dropimport_uploads_refused", "Uploads refused or cut, by reason.", ["reason"])
SESSIONS = Gauge("dropimport_ftp_sessions", "FTP sessions open now.")
#: Reasons: banned (an address under a ban), full (too many connections).
CONNECTIONS_REFUSED = Counter("dropimport_ftp_connections_refused",
                              "Connections turned away before a session, by reason.", ["reason"])
LOGIN_FAILURES = Counter("dropimport_ftp_login_failures", "Failed FTP logins.")
BANS = Counter("dropimport_ftp_bans", "Addresses banned for repeated failed logins.")
PUBLISHED = Counter("dropimport_events_published", "File events confirmed by RabbitMQ.")
UNPUBLISHED = Gauge("dropimport_events_unpublished",
                    "Spooled files whose event waits for RabbitMQ.")

for _reason in ("name", "rate", "size", "space", "resume", "incomplete"):
    REFUSED.labels(_reason)  # every reason shows from the start, at 0
for _reason in ("banned", "full"):
    CONNECTIONS_REFUSED.labels(_reason)


def serve(host: str, port: int) -> WSGIServer:
    """Serve /metrics on host:port from a daemon thread; return the server, to shut it down.

    Raises OSError when the port cannot be had.
    """
    server, _thread = start_http_server(port, host)
    return server
