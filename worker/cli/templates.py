"""`dropimport template`: record and show the import templates of an account."""

import json

import click

from dropimport.accounts import AccountError, Registry
from dropimport.cli import fail
from schemas import SchemaError
from schemas.settings import Settings

from ..read.template import check as check_template
from ..sample import SampleError, propose, read_sample


@click.group()
def template() -> None:
    """Record and show the import templates of an account."""


@template.command("set")
@click.argument("account_name", metavar="ACCOUNT")
@click.argument("path", metavar="TEMPLATE.json", type=click.Path(dir_okay=False))
@click.pass_obj
def template_set(settings: Settings, account_name: str, path: str) -> None:
    """Validate TEMPLATE.json and make it the template of its file for ACCOUNT."""
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except OSError as error:
        fail(f"{path}: {error.strerror}")
    except json.JSONDecodeError as error:
        fail(f"{path}: line {error.lineno} column {error.colno}: {error.msg}")
    try:
        saved = Registry(settings.home).set_template(account_name, check_template(document))
    except SchemaError as error:
        fail(f"{path}: {error}")
    except AccountError as error:
        fail(str(error))
    click.echo(f"template for {saved['file']} saved on account {account_name}")


@template.command("show")
@click.argument("account_name", metavar="ACCOUNT")
@click.argument("file", required=False)
@click.pass_obj
def template_show(settings: Settings, account_name: str, file: str | None) -> None:
    """Print the template of FILE, or all templates of ACCOUNT."""
    registry = Registry(settings.home)
    try:
        registry.get(account_name)
    except AccountError as error:
        fail(str(error))
    if file is None:
        click.echo(json.dumps(registry.templates(account_name), indent=2, ensure_ascii=False))
        return
    found = registry.template(account_name, file)
    if found is None:
        fail(f"account {account_name!r} has no template for {file!r}")
    click.echo(json.dumps(found, indent=2, ensure_ascii=False))


@template.command("from-sample")
@click.argument("account_name", metavar="ACCOUNT")
@click.argument("path", metavar="SAMPLE.csv", type=click.Path(dir_okay=False))
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help="Import COLUMN (name or 1-based position) as FIELD, or not at all with -.")
@click.option("--output", type=click.Path(dir_okay=False), metavar="PATH",
              help="Write the template to PATH instead of saving it on ACCOUNT.")
@click.pass_obj
def template_from_sample(settings: Settings, account_name: str, path: str,
                         maps: tuple[str, ...], output: str | None) -> None:
    """Propose a template from SAMPLE.csv, print it, and save it on ACCOUNT for its file name."""
    registry = Registry(settings.home)
    try:
        registry.get(account_name)
    except AccountError as error:
        fail(str(error))
    try:
        proposed = check_template(propose(read_sample(path), maps))
    except OSError as error:
        fail(f"{path}: {error.strerror}")
    except (SampleError, SchemaError) as error:
        fail(f"{path}: {error}")
    text = json.dumps(proposed, indent=2, ensure_ascii=False)
    click.echo(text)
    # Messages go to stderr: stdout is the template alone, for a pipe or a redirection.
    if output:
        try:
            with open(output, "w", encoding="utf-8") as file:
                file.write(text + "\n")
        except OSError as error:
            fail(f"{output}: {error.strerror}")
        click.echo(f"template for {proposed['file']} written to {output}, not saved", err=True)
        return
    try:
        registry.set_template(account_name, proposed)
    except AccountError as error:
        fail(str(error))
    click.echo(f"template for {proposed['file']} saved on account {account_name}", err=True)
