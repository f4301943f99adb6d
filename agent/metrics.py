"""The agent's Prometheus metrics, in prometheus_client's default registry.

`dropimport agent` serves them on DROPIMPORT_METRICS_HOST:DROPIMPORT_METRICS_PORT (/metrics).
No metric is labelled by account: with thousands of accounts, the series would be too many;
the logs carry the account.
"""

from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, start_http_server

#: Protocols: ftp (FTP and FTPS), sftp.
PROTOCOLS = ("ftp", "sftp")
UPLOADS = Counter("dropimport_uploads_received", "Complete uploads handed over for import.",
                  ["protocol"])
UPLOAD_BYTES = Counter("dropimport_upload_bytes_received", "Bytes of the complete uploads.",
                       ["protocol"])
#: Reasons: name (no template expects it), rate (hourly limit), size (max_file_size),
#: space (disk full or quota), resume (REST, APPE; an SFTP append), incomplete (the transfer
#: was cut, or an SFTP file left open or never renamed from its temporary name).
REFUSED = Counter("dropimport_uploads_refused", "Uploads refused or cut, by reason.",
                  ["protocol", "reason"])
SESSIONS = Gauge("dropimport_ftp_sessions", "FTP sessions open now.")
SFTP_SESSIONS = Gauge("dropimport_sftp_sessions", "SSH connections open now (SFTP door).")
#: Reasons: banned (an address under a ban), full (too many connections).
CONNECTIONS_REFUSED = Counter("dropimport_ftp_connections_refused",
                              "Connections turned away before a session, by reason.", ["reason"])
LOGIN_FAILURES = Counter("dropimport_ftp_login_failures", "Failed FTP logins.")
#: Methods: password, publickey (an unknown key, counted once a connection).
SFTP_LOGIN_FAILURES = Counter("dropimport_sftp_login_failures", "Failed SFTP logins, by method.",
                              ["method"])
SFTP_CONNECTIONS_REFUSED = Counter("dropimport_sftp_connections_refused",
                                   "SSH connections turned away before a login, by reason.",
                                   ["reason"])
#: One count for both doors: the failures of FTP and SFTP logins add up to a ban.
BANS = Counter("dropimport_ftp_bans", "Addresses banned for repeated failed logins.")
PUBLISHED = Counter("dropimport_events_published", "File events confirmed by RabbitMQ.")
UNPUBLISHED = Gauge("dropimport_events_unpublished",
                    "Spooled files whose event waits for RabbitMQ.")

# Every label shows from the start, at 0.
for _protocol in PROTOCOLS:
    UPLOADS.labels(_protocol)
    UPLOAD_BYTES.labels(_protocol)
    for _reason in ("name", "rate", "size", "space", "resume", "incomplete"):
        REFUSED.labels(_protocol, _reason)
for _reason in ("banned", "full"):
    CONNECTIONS_REFUSED.labels(_reason)
    SFTP_CONNECTIONS_REFUSED.labels(_reason)
for _method in ("password", "publickey"):
    SFTP_LOGIN_FAILURES.labels(_method)


def serve(host: str, port: int) -> WSGIServer:
    """Serve /metrics on host:port from a daemon thread; return the server, to shut it down.

    Raises OSError when the port cannot be had.
    """
    server, _thread = start_http_server(port, host)
    return server
