"""Hostile and cut files against the real processes: each is refused with its reason, at once,
and the account's next file is imported as if nothing had happened."""

import json

from tests.faults.conftest import HEADER, csv, upload


def test_hostile_and_cut_files_are_refused_at_once_and_the_next_file_imports(acme):
    # Given the system running, and files of the demo template's name uploaded in a row: a
    # header of 100,000 columns (its check took minutes), a header line of 8 MB, a file cut
    # inside its last line, one whose row holds a NUL character, then a good file
    acme.start()
    upload(acme, ";".join(f"c{n}" for n in range(100_000)) + "\r\n" + "x;" * 100 + "\r\n")
    upload(acme, "E-mail;" + "x" * (8 << 20) + "\r\njo@x.com;Jo;Doe;Lyon\r\n")
    upload(acme, csv(("jo@x.com", "Lyon")) + "am@y.fr;Am")
    upload(acme, csv(("jo@x.com", "Lyon")) + "am@y.fr;A\x00m;Y;Nice\r\n")
    upload(acme, HEADER + "zoe@z.fr;Zoé;Z;Nice\r\nam@y.fr;Am;Y;Nice")
    # When they are imported, then each hostile file is refused with the reason naming why
    records = list(reversed(acme.wait_for_imports(5)))
    assert [(r["status"], r["reason"]) for r in records[:3]] == [
        ("rejected", "contacts.csv line 1: the header has 100000 columns, more than the 2000 "
                     "a template may have"),
        ("rejected", "contacts.csv line 1: the header is longer than 1,048,576 characters, "
                     "more than a template's may be"),
        ("rejected", "contacts.csv: the file ends in the middle of line 3: the upload looks "
                     "incomplete; nothing imported"),
    ]
    # And the NUL rejects its row only, and the good file, complete without a final line
    # break, is imported whole
    nul, good = records[3:]
    assert (nul["status"], nul["created"], nul["rejected_rows"]) == ("imported", 1, 1)
    shown = json.loads(acme.cli("imports", "show", nul["id"], "--json").stdout)
    assert shown["rejections"] == [
        {"line": 3, "column": "Prénom", "value": None, "reason": "contains a NUL character"}]
    assert (good["status"], good["created"], good["rejected_rows"]) == ("imported", 2, 0)
    assert set(acme.contacts("acme")) == {"jo@x.com", "zoe@z.fr", "am@y.fr"}
