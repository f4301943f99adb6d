"""Settings, read once from the environment at process start, and the layout of the home."""

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def default_home(environ):
    data = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(data) / "dropimport"


def redact(url):
    """The URL with its password replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _port_range(text):
    if not text:
        return None
    first, _, last = text.partition("-")
    try:
        ports = range(int(first), int(last or first) + 1)
    except ValueError:
        raise ValueError(
            f"DROPIMPORT_FTP_PASSIVE_PORTS: expected FIRST-LAST such as 60000-60100, got {text!r}"
        ) from None
    if not ports or ports.start < 1 or ports.stop > 65536:
        raise ValueError(f"DROPIMPORT_FTP_PASSIVE_PORTS: {text!r} is not a valid port range")
    return ports


def _tls_mode(env, host):
    """FTPS is required by default whenever the server listens beyond the loopback."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    default = "off" if loopback else "required"
    mode = env.get("DROPIMPORT_FTP_TLS") or default
    if mode not in ("required", "optional", "off"):
        raise ValueError(f"DROPIMPORT_FTP_TLS: {mode!r} is not one of required, optional, off")
    return mode


def _number(env, name, default):
    text = env.get(name) or str(default)
    if not text.isdigit():
        raise ValueError(f"{name}: {text!r} is not a whole number")
    return int(text)


@dataclass(frozen=True)
class Home:
    """Where everything lives under DROPIMPORT_HOME."""

    root: Path

    @property
    def accounts(self):
        return self.root / "accounts"

    @property
    def staging(self):
        """Uploads in progress; never visible over FTP."""
        return self.root / "staging"

    @property
    def incoming(self):
        """Complete files, renamed here by every ingress path; the one directory watched."""
        return self.root / "incoming"

    @property
    def spool(self):
        return self.root / "spool"

    @property
    def archive(self):
        return self.root / "archive"

    @property
    def failed(self):
        return self.root / "failed"

    def pull_state(self, account, source):
        """What a remote source already fetched (pull mode), and how its last runs went."""
        return self.root / "pull" / account / f"{source}.json"

    def ftp_root(self, account):
        return self.root / "ftp" / account

    def reports(self, account):
        return self.ftp_root(account) / "reports"


@dataclass(frozen=True)
class Settings:
    home: Home
    broker_url: str = DEFAULT_BROKER_URL
    database_url: str = ""
    ftp_host: str = "127.0.0.1"
    ftp_port: int = 2121
    ftp_passive_ports: range | None = None
    ftp_masquerade_address: str | None = None
    ftp_tls: str = "off"
    ftp_tls_cert: str | None = None
    ftp_tls_key: str | None = None
    ftp_ban_threshold: int = 10
    ftp_ban_window: int = 900
    ftp_ban_seconds: int = 900
    ftp_max_connections: int = 512
    ftp_max_connections_per_ip: int = 20
    import_retries: int = 10
    health_min_free_mb: int = 1024
    import_min_backoff_ms: int = 5_000
    import_max_backoff_ms: int = 300_000
    #: Fernet key of the remote sources' passwords (pull mode); never shown in a repr.
    secret_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ=None):
        """Read the DROPIMPORT_* variables; every one has a default that works on a laptop."""
        env = os.environ if environ is None else environ
        home = Path(env.get("DROPIMPORT_HOME") or default_home(env)).expanduser().absolute()
        host = env.get("DROPIMPORT_FTP_HOST") or "127.0.0.1"
        port = _number(env, "DROPIMPORT_FTP_PORT", 2121)
        if port >= 65536:
            raise ValueError(f"DROPIMPORT_FTP_PORT: {port} is not a port number")
        return cls(
            home=Home(home),
            broker_url=env.get("DROPIMPORT_BROKER_URL") or DEFAULT_BROKER_URL,
            database_url=env.get("DROPIMPORT_DATABASE_URL") or f"sqlite:///{home / 'contacts.db'}",
            ftp_host=host,
            ftp_port=port,
            ftp_passive_ports=_port_range(env.get("DROPIMPORT_FTP_PASSIVE_PORTS")),
            ftp_masquerade_address=env.get("DROPIMPORT_FTP_MASQUERADE_ADDRESS") or None,
            ftp_tls=_tls_mode(env, host),
            ftp_tls_cert=env.get("DROPIMPORT_FTP_TLS_CERT") or None,
            ftp_tls_key=env.get("DROPIMPORT_FTP_TLS_KEY") or None,
            ftp_ban_threshold=_number(env, "DROPIMPORT_FTP_BAN_THRESHOLD", 10),
            ftp_ban_window=_number(env, "DROPIMPORT_FTP_BAN_WINDOW", 900),
            ftp_ban_seconds=_number(env, "DROPIMPORT_FTP_BAN_SECONDS", 900),
            ftp_max_connections=_number(env, "DROPIMPORT_FTP_MAX_CONNECTIONS", 512),
            ftp_max_connections_per_ip=_number(env, "DROPIMPORT_FTP_MAX_CONNECTIONS_PER_IP", 20),
            import_retries=_number(env, "DROPIMPORT_IMPORT_RETRIES", 10),
            health_min_free_mb=_number(env, "DROPIMPORT_HEALTH_MIN_FREE_MB", 1024),
            import_min_backoff_ms=_number(env, "DROPIMPORT_IMPORT_MIN_BACKOFF_MS", 5_000),
            import_max_backoff_ms=_number(env, "DROPIMPORT_IMPORT_MAX_BACKOFF_MS", 300_000),
            secret_key=env.get("DROPIMPORT_SECRET_KEY") or None,
        )

    def describe(self):
        """The settings as an operator reads them, with no secret in clear."""
        passive = self.ftp_passive_ports
        return {
            "DROPIMPORT_HOME": str(self.home.root),
            "DROPIMPORT_BROKER_URL": redact(self.broker_url),
            "DROPIMPORT_DATABASE_URL": redact(self.database_url),
            "DROPIMPORT_FTP_HOST": self.ftp_host,
            "DROPIMPORT_FTP_PORT": self.ftp_port,
            "DROPIMPORT_FTP_PASSIVE_PORTS": passive and f"{passive.start}-{passive.stop - 1}",
            "DROPIMPORT_FTP_MASQUERADE_ADDRESS": self.ftp_masquerade_address,
            "DROPIMPORT_FTP_TLS": self.ftp_tls,
            "DROPIMPORT_FTP_TLS_CERT": self.ftp_tls_cert,
            "DROPIMPORT_FTP_TLS_KEY": self.ftp_tls_key,
            "DROPIMPORT_FTP_BAN_THRESHOLD": self.ftp_ban_threshold,
            "DROPIMPORT_FTP_BAN_WINDOW": self.ftp_ban_window,
            "DROPIMPORT_FTP_BAN_SECONDS": self.ftp_ban_seconds,
            "DROPIMPORT_FTP_MAX_CONNECTIONS": self.ftp_max_connections,
            "DROPIMPORT_FTP_MAX_CONNECTIONS_PER_IP": self.ftp_max_connections_per_ip,
            "DROPIMPORT_IMPORT_RETRIES": self.import_retries,
            "DROPIMPORT_HEALTH_MIN_FREE_MB": self.health_min_free_mb,
            "DROPIMPORT_IMPORT_MIN_BACKOFF_MS": self.import_min_backoff_ms,
            "DROPIMPORT_IMPORT_MAX_BACKOFF_MS": self.import_max_backoff_ms,
            "DROPIMPORT_SECRET_KEY": self.secret_key and "***",
        }
