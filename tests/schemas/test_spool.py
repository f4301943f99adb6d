import pytest

from schemas import SchemaError, check_template, spool


def test_an_event_names_its_upload_by_a_path_any_host_resolves(home):
    path = spool.spool_path(home, "acme", "20261125-083512-123456-9f3a", "contacts.csv")
    assert path == "spool/acme/20261125-083512-123456-9f3a/contacts.csv"
    assert spool.spooled_file(home, {"spool_path": path}) == (
        spool.folder(home, "acme", "20261125-083512-123456-9f3a") / "contacts.csv")


def test_what_the_pipeline_adds_is_told_apart_from_the_upload(demo_template):
    for name in (spool.EVENT_FILE, spool.PUBLISHED, spool.FAILED, spool.REJECTED_ROWS,
                 ".tmp-1a2b"):
        assert spool.is_pipeline_file(name)
    assert not spool.is_pipeline_file("contacts.csv")
    # Because no template may name an upload that starts with a dot
    with pytest.raises(SchemaError, match="file"):
        check_template({**demo_template, "file": ".contacts.csv"})


def test_an_import_is_queued_until_it_concludes(home):
    spooled = spool.folder(home, "acme", "20261125-083512-123456-9f3a")
    spooled.mkdir(parents=True)
    (spooled / spool.EVENT_FILE).write_text("{}")
    assert spool.find(home, "20261125-083512-123456-9f3a") == spooled
    assert spool.is_queued(home, spooled)
    assert list(spool.imports(home)) == [("acme", "20261125-083512-123456-9f3a")]
    for status, root in (("imported", home.archive), ("rejected", home.failed)):
        kept = spool.concluded(home, "acme", "20261125-083512-123456-9f3a", status)
        assert kept.parent.parent == root
        assert not spool.is_queued(home, kept)
