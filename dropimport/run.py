"""`dropimport run`: the agent and a worker as two processes of one, and the demo it serves."""

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import NoReturn

import click

from schemas.settings import Settings

from .accounts import AccountError, Registry
from .cli import fail
from .health import broker_problem

DEMO_ACCOUNT = "demo"
DEMO_PASSWORD = "demo"


def create_demo(settings: Settings) -> tuple[Path, Path]:
    """Create the `demo` account and its template if absent; return the paths of the sample
    file and of its completion marker."""
    registry = Registry(settings.home)
    demo = resources.files(__package__).joinpath("demo")
    # curl uploads the sample from these paths: the package is installed as files, not zipped.
    assert isinstance(demo, Path)
    template = json.loads(demo.joinpath("template.json").read_text())
    try:
        registry.get(DEMO_ACCOUNT)
    except AccountError:
        registry.create(DEMO_ACCOUNT, DEMO_ACCOUNT, DEMO_PASSWORD)
    if registry.template(DEMO_ACCOUNT, template["file"]) is None:
        registry.set_template(DEMO_ACCOUNT, template)
    sample = template["file"]
    return demo.joinpath(sample), demo.joinpath(sample + template["completion"]["marker"])


def check_broker(url: str) -> None:
    """Fail at once, naming the URL, when RabbitMQ cannot be reached."""
    problem = broker_problem(url)
    if problem:
        fail(
            f"{problem}; start it with `rabbitmq-server -detached` or "
            "`docker compose up -d rabbitmq`, or set DROPIMPORT_BROKER_URL"
        )


def _stop(processes: Sequence[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@click.command()
@click.option("--demo", is_flag=True, help="Create a demo account and print how to upload to it.")
@click.option("--threads", default=4, show_default=True, help="Worker threads.")
@click.pass_obj
def run(settings: Settings, demo: bool, threads: int) -> None:
    """Run the agent and a worker together in the foreground (one machine)."""
    check_broker(settings.broker_url)
    if demo:
        sample, marker = create_demo(settings)
        url = f"ftp://{DEMO_ACCOUNT}:{DEMO_PASSWORD}@{settings.ftp_host}:{settings.ftp_port}/"
        # With FTPS on, curl must ask for it (-k: a test setup's certificate is self-signed).
        tls = "" if settings.ftp_tls == "off" else "--ssl-reqd -k "
        click.echo("demo account ready; upload the sample, then its completion marker, with:\n")
        # One line, one after the other: curl expands the braces (quoted from the shell).
        click.echo(f'  curl {tls}-T "{sample.parent}/{{{sample.name},{marker.name}}}" {url}\n')
        if settings.sftp_port is not None:
            # The same account over SFTP, by its password (add a key with `account add-key`).
            click.echo("or over SFTP (password demo), from the sample's folder:\n")
            click.echo(f"  cd {sample.parent} && printf 'put {sample.name}\\nput {marker.name}\\n' "
                       f"| sftp -P {settings.sftp_port} -o StrictHostKeyChecking=accept-new "
                       f"{DEMO_ACCOUNT}@{settings.sftp_host}\n")
        click.echo(f"then: dropimport imports list; ls {settings.home.reports(DEMO_ACCOUNT)}\n")
    command = [sys.executable, "-m", "dropimport"]
    # Each in a process group of its own: a Ctrl-C reaches this process alone, which stops each
    # with one SIGTERM. Given the terminal's SIGINT as well, dramatiq would take our SIGTERM
    # for a second Ctrl-C and kill its worker process at once, leaving its imports running.
    processes = [
        subprocess.Popen([*command, "agent"], process_group=0),
        subprocess.Popen([*command, "worker", "--processes", "1", "--threads", str(threads)],
                         process_group=0),
    ]

    def on_signal(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # the terminal closed: no longer reaches them
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(processes)
    codes = [process.returncode for process in processes]
    sys.exit(0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1)
