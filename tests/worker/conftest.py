"""Fixtures of the worker tests: an Importer on each store, files put in the spool."""

import hashlib
import json
from itertools import count

import pytest

from schemas import spool as layout  # `spool` is this module's helper below
from worker.importer import Importer
from worker.write.store import Store

HEADER = "E-mail;Prénom;Nom;Ville\r\n"


@pytest.fixture
def importer(settings, registry, demo_template):
    registry.create("acme", "acme", "pw")
    registry.create("globex", "globex", "pw")
    registry.set_template("acme", demo_template)
    registry.set_template("globex", demo_template)
    store = Store(settings.database_url)
    yield Importer(settings.home, store)
    store.close()


_counter = count(100000)


def spool(home, account, content, file="contacts.csv"):
    """Put `content` in the spool as the agent would; return its file event."""
    import_id = f"20261125-083512-{next(_counter)}-9f3a"
    data = content.encode("utf-8") if isinstance(content, str) else content
    folder = layout.folder(home, account, import_id)
    folder.mkdir(parents=True)
    (folder / file).write_bytes(data)
    event = {
        "import_id": import_id, "account": account, "file": file,
        "spool_path": layout.spool_path(home, account, import_id, file), "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "received_at": "2026-11-25T08:35:12.123456+00:00",
    }
    (folder / layout.EVENT_FILE).write_text(json.dumps(event))
    return event


def exported(store, account):
    """The account's contacts by e-mail, with their other fields."""
    return {
        contact.pop("email"): {k: v for k, v in contact.items() if k != "unsubscribed"}
        for contact in store.export(account)
    }


