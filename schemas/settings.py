"""Settings, read once from the environment at process start, and the layout of the home."""

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, overload
from urllib.parse import urlsplit, urlunsplit

#: The umask of every process: what it writes is readable by its own user alone (0600 files
#: in 0700 folders), whatever the umask of the shell or service manager that started it.
UMASK = 0o077
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
#: The SMTP port of each DROPIMPORT_SMTP_TLS mode, unless DROPIMPORT_SMTP_PORT says otherwise.
SMTP_PORTS = {"starttls": 587, "ssl": 465, "off": 25}


def default_home(environ: Mapping[str, str]) -> Path:
    data = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(data) / "dropimport"


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _port_range(text: str | None) -> range | None:
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


def _tls_mode(env: Mapping[str, str], host: str) -> str:
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


# With a default, there is always a value.
@overload
def _choice(env: Mapping[str, str], name: str, choices: Sequence[str], default: str) -> str: ...
@overload
def _choice(env: Mapping[str, str], name: str, choices: Sequence[str]) -> str | None: ...
def _choice(
    env: Mapping[str, str], name: str, choices: Sequence[str], default: str | None = None
) -> str | None:
    value = env.get(name) or default
    if value is not None and value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int | None:
    """A port number, or None for `off`."""
    if env.get(name) == "off":
        return None
    port = _number(env, name, default)
    if port >= 65536:
        raise ValueError(f"{name}: {port} is not a port number")
    return port


def default_reader_processes() -> int:
    """The processes that convert a big file's rows by default: one core is the writer's."""
    return max((os.cpu_count() or 1) - 1, 1)


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name) or str(default)
    if not text.isdigit():
        raise ValueError(f"{name}: {text!r} is not a whole number")
    return int(text)


@dataclass(frozen=True)
class Home:
    """Where everything lives under DROPIMPORT_HOME."""

    root: Path

    def make_private(self) -> None:
        """Create the home if need be and keep other users of the machine out of it.

        Everything under it is customer data (contacts, files, reports) or secrets (password
        hashes): the processes write with UMASK, and the folders that a version before it
        made open to all are closed here.
        """
        os.umask(UMASK)
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, *(p for p in self.root.iterdir() if p.is_dir())):
            folder.chmod(0o700)

    @property
    def accounts(self) -> Path:
        return self.root / "accounts"

    @property
    def staging(self) -> Path:
        """Uploads in progress; never visible over FTP."""
        return self.root / "staging"

    @property
    def incoming(self) -> Path:
        """Complete files, renamed here by every ingress path; the one directory watched."""
        return self.root / "incoming"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    @property
    def heartbeats(self) -> Path:
        """One file per worker process, touched while it consumes; read by its host's probe."""
        return self.root / "heartbeats"

    def pull_state(self, account: str, source: str) -> Path:
        """What a remote source already fetched (pull mode), and how its last runs went."""
        return self.root / "pull" / account / f"{source}.json"

    @property
    def ssh_host_key(self) -> Path:
        """The SFTP door's host key when DROPIMPORT_SFTP_HOST_KEY names none: made once, kept."""
        return self.root / "ssh_host_ed25519_key"

    def export_schedule(self, account: str, export: str) -> Path:
        """The last run of an export the agent published (its schedule's state)."""
        return self.root / "export-schedules" / account / f"{export}.json"

    @property
    def export_work(self) -> Path:
        """Where a worker writes an export's file until it is complete (out of every root)."""
        return self.root / "export-work"

    def ftp_root(self, account: str) -> Path:
        return self.root / "ftp" / account

    def reports(self, account: str) -> Path:
        return self.ftp_root(account) / "reports"

    def dryrun(self, account: str) -> Path:
        """Where the account uploads a file to preview its import (nothing is changed)."""
        return self.ftp_root(account) / "dryrun"

    def exports(self, account: str) -> Path:
        """Where the account's hosted exports appear, complete, for it to download."""
        return self.ftp_root(account) / "exports"

    def make_root(self, account: str) -> None:
        """Make the account's root and its folders, if missing."""
        for folder in (self.reports(account), self.dryrun(account), self.exports(account)):
            folder.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Smtp:
    """The mail relay notifications go through; without a host, no e-mail is sent."""

    host: str | None = None
    port: int = 587
    tls: str = "starttls"  # STARTTLS, implicit TLS ("ssl") or none ("off", a local relay)
    user: str | None = None
    password: str | None = None
    sender: str = "dropimport@localhost"
    ca_file: str | None = None  # CA certificates to trust beyond the system's (private CA)


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
    sftp_host: str = "127.0.0.1"
    sftp_port: int | None = 2222  # None: off
    #: The SFTP host keys; none given: home.ssh_host_key, made once.
    sftp_host_keys: tuple[Path, ...] = ()
    import_retries: int = 10
    health_min_free_mb: int = 1024
    import_min_backoff_ms: int = 5_000
    import_max_backoff_ms: int = 300_000
    #: An export run whose server cannot be reached is tried again this many times, waiting
    #: from the first backoff, doubling, up to the last (then failed and notified).
    export_retries: int = 8
    export_min_backoff_ms: int = 30_000
    export_max_backoff_ms: int = 900_000
    log_format: str | None = None  # text or json; None: text on a terminal, else json
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9180  # the agent's; None: off
    worker_metrics_port: int | None = 9191
    rabbitmq_api_url: str | None = None  # None: derived from the broker URL; "off"
    smtp: Smtp = Smtp()
    notify_retries: int = 10
    notify_min_backoff_ms: int = 15_000
    notify_max_backoff_ms: int = 3_600_000
    late_check_seconds: int = 60
    progress_ms: int = 5000  # how often a running import records its progress
    #: Days an applied import's journal (its contacts before it) is kept; 0: no journal
    journal_days: int = 30
    #: Processes converting a big file's rows (worker/read/reader.converting)
    reader_processes: int = field(default_factory=default_reader_processes)
    #: Fernet key of the remote sources' passwords (pull mode); never shown in a repr.
    secret_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read the DROPIMPORT_* variables; every one has a default that works on a laptop."""
        env = os.environ if environ is None else environ
        home = Path(env.get("DROPIMPORT_HOME") or default_home(env)).expanduser().absolute()
        host = env.get("DROPIMPORT_FTP_HOST") or "127.0.0.1"
        port = _number(env, "DROPIMPORT_FTP_PORT", 2121)
        if port >= 65536:
            raise ValueError(f"DROPIMPORT_FTP_PORT: {port} is not a port number")
        smtp_tls = _choice(env, "DROPIMPORT_SMTP_TLS", tuple(SMTP_PORTS), "starttls")
        return cls(
            log_format=_choice(env, "DROPIMPORT_LOG_FORMAT", ("text", "json")),
            metrics_host=env.get("DROPIMPORT_METRICS_HOST") or "127.0.0.1",
            metrics_port=_port(env, "DROPIMPORT_METRICS_PORT", 9180),
            worker_metrics_port=_port(env, "DROPIMPORT_WORKER_METRICS_PORT", 9191),
            rabbitmq_api_url=env.get("DROPIMPORT_RABBITMQ_API_URL") or None,
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
            sftp_host=env.get("DROPIMPORT_SFTP_HOST") or host,
            sftp_port=_port(env, "DROPIMPORT_SFTP_PORT", 2222),
            sftp_host_keys=tuple(Path(path.strip()).expanduser().absolute() for path in
                                 (env.get("DROPIMPORT_SFTP_HOST_KEY") or "").split(",")
                                 if path.strip()),
            import_retries=_number(env, "DROPIMPORT_IMPORT_RETRIES", 10),
            reader_processes=max(_number(env, "DROPIMPORT_READER_PROCESSES",
                                         default_reader_processes()), 1),
            health_min_free_mb=_number(env, "DROPIMPORT_HEALTH_MIN_FREE_MB", 1024),
            import_min_backoff_ms=_number(env, "DROPIMPORT_IMPORT_MIN_BACKOFF_MS", 5_000),
            export_retries=_number(env, "DROPIMPORT_EXPORT_RETRIES", 8),
            export_min_backoff_ms=_number(env, "DROPIMPORT_EXPORT_MIN_BACKOFF_MS", 30_000),
            export_max_backoff_ms=_number(env, "DROPIMPORT_EXPORT_MAX_BACKOFF_MS", 900_000),
            import_max_backoff_ms=_number(env, "DROPIMPORT_IMPORT_MAX_BACKOFF_MS", 300_000),
            smtp=Smtp(
                host=env.get("DROPIMPORT_SMTP_HOST") or None,
                port=_number(env, "DROPIMPORT_SMTP_PORT", SMTP_PORTS[smtp_tls]),
                tls=smtp_tls,
                user=env.get("DROPIMPORT_SMTP_USER") or None,
                password=env.get("DROPIMPORT_SMTP_PASSWORD") or None,
                sender=env.get("DROPIMPORT_SMTP_FROM") or "dropimport@localhost",
                ca_file=env.get("DROPIMPORT_SMTP_CA_FILE") or None,
            ),
            notify_retries=_number(env, "DROPIMPORT_NOTIFY_RETRIES", 10),
            notify_min_backoff_ms=_number(env, "DROPIMPORT_NOTIFY_MIN_BACKOFF_MS", 15_000),
            notify_max_backoff_ms=_number(env, "DROPIMPORT_NOTIFY_MAX_BACKOFF_MS", 3_600_000),
            late_check_seconds=_number(env, "DROPIMPORT_LATE_CHECK_SECONDS", 60),
            progress_ms=_number(env, "DROPIMPORT_PROGRESS_MS", 5000),
            journal_days=_number(env, "DROPIMPORT_JOURNAL_DAYS", 30),
            secret_key=env.get("DROPIMPORT_SECRET_KEY") or None,
        )

    def describe(self) -> dict[str, object]:
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
            "DROPIMPORT_SFTP_HOST": self.sftp_host,
            "DROPIMPORT_SFTP_PORT": self.sftp_port or "off",
            "DROPIMPORT_SFTP_HOST_KEY": ",".join(
                map(str, self.sftp_host_keys or (self.home.ssh_host_key,))),
            "DROPIMPORT_IMPORT_RETRIES": self.import_retries,
            "DROPIMPORT_HEALTH_MIN_FREE_MB": self.health_min_free_mb,
            "DROPIMPORT_IMPORT_MIN_BACKOFF_MS": self.import_min_backoff_ms,
            "DROPIMPORT_EXPORT_RETRIES": self.export_retries,
            "DROPIMPORT_EXPORT_MIN_BACKOFF_MS": self.export_min_backoff_ms,
            "DROPIMPORT_EXPORT_MAX_BACKOFF_MS": self.export_max_backoff_ms,
            "DROPIMPORT_IMPORT_MAX_BACKOFF_MS": self.import_max_backoff_ms,
            "DROPIMPORT_READER_PROCESSES": self.reader_processes,
            "DROPIMPORT_LOG_FORMAT": self.log_format,
            "DROPIMPORT_METRICS_HOST": self.metrics_host,
            "DROPIMPORT_METRICS_PORT": self.metrics_port or "off",
            "DROPIMPORT_WORKER_METRICS_PORT": self.worker_metrics_port or "off",
            "DROPIMPORT_RABBITMQ_API_URL": self.rabbitmq_api_url and redact(self.rabbitmq_api_url),
            "DROPIMPORT_SMTP_HOST": self.smtp.host,
            "DROPIMPORT_SMTP_PORT": self.smtp.port,
            "DROPIMPORT_SMTP_TLS": self.smtp.tls,
            "DROPIMPORT_SMTP_USER": self.smtp.user,
            "DROPIMPORT_SMTP_PASSWORD": self.smtp.password and "***",
            "DROPIMPORT_SMTP_FROM": self.smtp.sender,
            "DROPIMPORT_SMTP_CA_FILE": self.smtp.ca_file,
            "DROPIMPORT_NOTIFY_RETRIES": self.notify_retries,
            "DROPIMPORT_NOTIFY_MIN_BACKOFF_MS": self.notify_min_backoff_ms,
            "DROPIMPORT_NOTIFY_MAX_BACKOFF_MS": self.notify_max_backoff_ms,
            "DROPIMPORT_LATE_CHECK_SECONDS": self.late_check_seconds,
            "DROPIMPORT_PROGRESS_MS": self.progress_ms,
            "DROPIMPORT_JOURNAL_DAYS": self.journal_days,
            "DROPIMPORT_SECRET_KEY": self.secret_key and "***",
        }
