"""OpenSSH's `sftp` client putting a file, and OpenSSH's own SFTP server to compare ours with (F).

The reference is OpenSSH's `sftp-server` as the sftp subsystem of a throwaway `sshd -D` on a
free port, under a temporary directory: its own host key, the clients' keys authorized, no PAM,
no PID file. sshd comes from the distribution's openssh-server package, installed with apt-get
when it is missing (said in the log). Both servers are driven by the same client with the same
options (key login, a known-hosts file of the run's, every algorithm left to negotiate), so that
the ciphers they agree on are the client's defaults, which each put reports.
"""

import getpass
import logging
import os
import queue
import re
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from tests import harness

from .errors import BenchError

log = logging.getLogger(__name__)

SSHD = "/usr/sbin/sshd"  # by its absolute path: sshd re-executes itself
#: Where distributions put OpenSSH's sftp-server.
SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                "/usr/libexec/sftp-server", "/usr/lib/ssh/sftp-server")
#: sshd's privilege separation directory (Debian's), which it refuses to start without.
PRIVSEP = Path("/run/sshd")
#: What `sftp -v` says of the cipher of each direction; an upload's is client->server.
CIPHER = re.compile(r"kex: client->server cipher: (\S+) MAC: (\S+)")
#: What sftp prints of `pwd`.
PWD = "Remote working directory:"
PUT_TIMEOUT = 600
#: The clock ticks of /proc/PID/stat's times.
TICKS = os.sysconf("SC_CLK_TCK")


class Put(NamedTuple):
    """One file put by OpenSSH's sftp, timed on the client: `seconds` from the `put` command
    sent, once logged in, to its end (the server's reply to the file's close); `session`
    seconds from starting sftp to its exit. The cipher and MAC negotiated for the upload's
    direction; the client's CPU seconds (sftp and its ssh), when it ran alone."""

    seconds: float
    session: float
    started_at: datetime
    ended_at: datetime  # the put's end
    cipher: str
    mac: str
    client_cpu: float | None


def openssh_server():
    """The paths of sshd and sftp-server, and whether openssh-server had to be installed
    (apt-get, from the distribution's packages) to have them."""
    installed = False
    if not Path(SSHD).exists():
        log.warning("%s not found: installing openssh-server from the distribution's packages "
                    "(apt-get); a system sshd it may start is not used", SSHD)
        _apt_install("openssh-server")
        installed = True
    server = next((path for path in SFTP_SERVERS if Path(path).exists()), None)
    if not Path(SSHD).exists() or server is None:
        raise BenchError(f"OpenSSH's sshd and sftp-server are needed: {SSHD}, one of "
                         f"{', '.join(SFTP_SERVERS)}")
    return SSHD, server, installed


def _apt_install(package):
    """Install `package`, updating the package lists first if that fails (as `make clients`)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args):
        return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True,
                              timeout=900, check=False)

    if apt("install", "-y", "-qq", package).returncode == 0:
        return
    apt("update", "-qq")
    done = apt("install", "-y", "-qq", package)
    if done.returncode != 0:
        raise BenchError(f"apt-get install {package}: {done.stderr.strip()[-500:]}")


def keypair(path):
    """A new ed25519 key without a passphrase at `path` (its public half at `path`.pub)."""
    done = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name,
                           "-f", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"ssh-keygen: {done.stderr.strip()}")
    return path


def put(port, user, key, source, target, known_hosts, alone=False):
    """Put the file `source` as `target` on the SFTP server of 127.0.0.1:`port`, logged in as
    `user` with the private key `key`, by OpenSSH's sftp in batch mode. `alone`: no other
    child of this process runs meanwhile, so that the client's CPU time can be told.

    The put is timed alone: a `pwd` before it says the login is done, one after it that the
    put is (sftp runs its commands in turn, each once the one before has ended).
    """
    command = [
        shutil.which("sftp") or "sftp", "-v", "-b", "-", "-F", "/dev/null", "-P", str(port),
        "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null", f"{user}@127.0.0.1",
    ]
    before = _children_cpu()
    started_at, clock = datetime.now(UTC), time.perf_counter()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr, \
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=stderr, text=True, bufsize=1) as client:
        lines = queue.Queue()
        threading.Thread(target=_read, args=(client.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + PUT_TIMEOUT
        try:
            client.stdin.write("pwd\n")
            logged_in = _until(lines, deadline)
            sent = time.perf_counter()
            client.stdin.write(f'put "{source}" "{target}"\npwd\n')
            put_done = _until(lines, deadline)
            seconds, ended_at = time.perf_counter() - sent, datetime.now(UTC)
            client.stdin.close()
            client.wait(max(deadline - time.monotonic(), 1))
        except (BrokenPipeError, subprocess.TimeoutExpired):
            client.kill()
            logged_in = put_done = False
        session = time.perf_counter() - clock
        stderr.seek(0)
        said = stderr.read()
    if not (logged_in and put_done) or client.returncode != 0:
        errors = [line for line in said.splitlines() if not line.startswith("debug")]
        raise BenchError(f"sftp put of {source} as {target} by {user} on port {port} "
                         f"(exit {client.returncode}): {' / '.join(errors[-5:])}")
    negotiated = CIPHER.search(said)
    cipher, mac = negotiated.groups() if negotiated else ("?", "?")
    return Put(seconds, session, started_at, ended_at, cipher, mac,
               _children_cpu() - before if alone else None)


def _read(stdout, lines):
    for line in stdout:
        lines.put(line)
    lines.put(None)


def _until(lines, deadline):
    """Whether sftp answered a `pwd` before `deadline` (False: it ended, or timed out)."""
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            return False
        if line is None:
            return False
        if line.startswith(PWD):
            return True


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid, children=False):
    """The CPU seconds (user and system) of process `pid` so far, and with `children` those
    of its children it has waited for."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime: the 14th to 17th fields, the 12th to 15th after the name
    times = [int(field) for field in fields[11:15 if children else 13]]
    return sum(times) / TICKS


class Reference:
    """OpenSSH's sftp-server, the subsystem of a `sshd -D` of its own on a free port, under
    `root`, to use in `with`; the public keys of `authorized` may log in as this user (root,
    as the benchmark runs). `sshd` and `sftp_server` are the programs' paths."""

    def __init__(self, root, authorized, sshd, sftp_server):
        self.root = root
        self.authorized = authorized
        self.sshd = sshd
        self.sftp_server = sftp_server
        self.port = harness.free_port()
        self.user = getpass.getuser()
        self.uploads = root / "uploads"
        self.known_hosts = root / "known_hosts"
        self.log = root / "sshd.log"
        self._process = None

    def __enter__(self):
        self.uploads.mkdir(parents=True)
        PRIVSEP.mkdir(mode=0o755, exist_ok=True)
        host_key = keypair(self.root / "host_key")
        authorized_keys = self.root / "authorized_keys"
        authorized_keys.write_text("".join(Path(f"{key}.pub").read_text("ascii")
                                           for key in self.authorized), "ascii")
        config = self.root / "sshd_config"
        config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
MaxStartups 100
MaxSessions 100
Subsystem sftp {self.sftp_server}
""", "ascii")
        with open(self.log, "ab") as log_file:
            self._process = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(config)],
                                             stdout=log_file, stderr=subprocess.STDOUT)
        try:
            harness.wait_until(lambda: self._process.poll() is not None
                               or harness.accepts(self.port), 20, "OpenSSH's sshd to listen")
        except harness.Failed as error:
            self.__exit__()
            raise BenchError(f"{error}; see {self.log}") from error
        if self._process.poll() is not None:
            raise BenchError(f"sshd exited ({self._process.returncode}): "
                             f"{self.log.read_text('utf-8', 'replace').strip()[-500:]}")
        log.info("OpenSSH's sshd on port %d, subsystem sftp %s", self.port, self.sftp_server)
        return self

    def __exit__(self, *exc_info):
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def put(self, key, source, name, alone=False):
        """Put `source` as `name` in its folder of uploads (a file left by a put before
        removed first: ours writes a new file each time too)."""
        target = self.uploads / name
        target.unlink(missing_ok=True)
        return put(self.port, self.user, key, source, target, self.known_hosts, alone)

    def cpu_seconds(self):
        """The server's CPU seconds so far: sshd's and those of its sessions, once they ended
        (each connection's sshd processes and sftp-server; waited for, 5 s at most)."""
        pid = self._process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        deadline = time.monotonic() + 5
        while children.read_text("ascii").strip() and time.monotonic() < deadline:
            time.sleep(0.01)
        return cpu_seconds(pid, children=True)
