"""Real local receivers of notifications: an SMTP server (aiosmtpd) and a webhook endpoint
(http.server), each in a thread of the test process, on the loopback."""

import email
import hashlib
import hmac
import json
import threading
from contextlib import contextmanager
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.harness import free_port


class Mailbox:
    """The aiosmtpd handler: keeps every message with how it came (TLS, login)."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append({"message": message, "rcpt_tos": envelope.rcpt_tos,
                              # session.ssl is only set by STARTTLS, not implicit TLS
                              "tls": (session.ssl is not None or server.transport
                                      .get_extra_info("ssl_object") is not None),
                              "authenticated": bool(session.authenticated)})
        return "250 OK"


@contextmanager
def smtp_server(tls_context=None, implicit_tls=False, login=None):
    """A real SMTP server on the loopback: plain, with STARTTLS (`tls_context`), or with
    implicit TLS; `login` (user, password) makes AUTH required. Yields (mailbox, port)."""
    mailbox = Mailbox()
    options = {}
    if tls_context is not None and not implicit_tls:
        options.update(tls_context=tls_context, require_starttls=True)
    if login:
        def authenticator(server, session, envelope, mechanism, data):
            return AuthResult(success=(data.login.decode(), data.password.decode()) == login)
        options.update(authenticator=authenticator, auth_required=True,
                       auth_require_tls=not implicit_tls)
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(),
                            ssl_context=tls_context if implicit_tls else None, **options)
    controller.start()
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()


class Webhook:
    """An HTTP endpoint that records each POST, answering `failures` with 503 first."""

    def __init__(self, secret, failures=0):
        self.secret = secret
        self.failures = failures
        self.requests = []  # every POST: {"headers", "body", "json", "valid"}
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(webhook.secret.encode(), body,
                                                hashlib.sha256).hexdigest()
                signature = self.headers.get("X-Dropimport-Signature", "")
                webhook.requests.append({
                    "headers": dict(self.headers), "body": body, "json": json.loads(body),
                    "valid": hmac.compare_digest(signature, expected),
                })
                failing = len(webhook.requests) <= webhook.failures
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/dropimport"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook")

    @property
    def delivered(self):
        """The requests answered 2xx."""
        return self.requests[self.failures:]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
