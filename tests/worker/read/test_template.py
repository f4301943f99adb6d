"""The template engine: headers, positions, defaults, empty cells, duplicates."""

import copy
import pickle

import orjson
import pytest

from schemas import template_with_defaults
from worker.contact import Rejection, document
from worker.read import template as planning
from worker.read.csvfile import Unfinished
from worker.read.rows import LOOKUP_PAUSE, chunks, contacts
from worker.read.template import HeaderMismatch, plan_for


def plan(template, header, encoding="utf-8"):
    """The Plan of a template as the registry loads it: with its defaults."""
    return plan_for(template_with_defaults(template), header, encoding)

HEADER = ["E-mail", "Prénom", "Nom", "Ville"]


class Outcome:
    def __init__(self):
        self.rejections, self.skipped = [], 0

    def reject(self, rejection):
        self.rejections.append(rejection)

    def skip(self):
        self.skipped += 1


def run(template, rows, header=HEADER):
    outcome = Outcome()
    found = list(contacts(plan(template, header), rows, outcome))
    return [(c.line, c.key, c.fields) for c in found], outcome


def with_options(template, **options):
    changed = copy.deepcopy(template)
    changed.update(options)
    return changed


def test_same_header_maps_by_name(demo_template):
    found, outcome = run(demo_template, [(2, [" Jo@X.com ", "Jo", "", "Lyon"])])
    assert found == [(2, "jo@x.com", {"email": "jo@x.com", "first_name": "Jo", "city": "Lyon"})]
    assert outcome.rejections == []


@pytest.mark.parametrize(("header", "problem"), [
    (["E-mail", "Prenom", "Nom", "Ville"], "missing 'Prénom'; unexpected 'Prenom'"),
    (["E-mail", "Prénom", "Nom"], "missing 'Ville'"),
    (["E-mail", "Prénom", "Nom", "Ville", "Pays"], "unexpected 'Pays'"),
    (["Prénom", "E-mail", "Nom", "Ville"], "same columns in another order"),
    (["E-mail", "Prénom", "Nom", "Ville", "Ville"], "repeated 'Ville'"),
    (["e-mail", "Prénom", "Nom", "Ville"], "missing 'E-mail'; unexpected 'e-mail'"),
])
def test_a_changed_header_names_the_columns(demo_template, header, problem):
    with pytest.raises(HeaderMismatch, match=problem):
        plan(demo_template, header)


def test_header_ignoring_case_and_spaces(demo_template):
    template = with_options(demo_template, header={"match": "ignore_case_and_spaces"})
    header = [" e-MAIL", "prénom ", "N o m", "VILLE"]
    found, _ = run(template, [(2, ["a@b.fr", "A", "B", "C"])], header)
    assert found[0][2] == {"email": "a@b.fr", "first_name": "A", "last_name": "B", "city": "C"}


def test_extra_columns_ignored_when_allowed(demo_template):
    template = with_options(demo_template, header={"extra_columns": "ignore"})
    header = ["Id", "E-mail", "Prénom", "Nom", "Pays", "Ville"]
    found, _ = run(template, [(2, ["7", "a@b.fr", "A", "B", "FR", "Lyon"])], header)
    assert found[0][2] == {"email": "a@b.fr", "first_name": "A", "last_name": "B", "city": "Lyon"}
    with pytest.raises(HeaderMismatch, match="missing 'Ville'"):
        plan(template, ["E-mail", "Prénom", "Nom", "Pays"])


def test_a_file_without_header_maps_by_position():
    template = {
        "file": "c.csv", "columns": ["mail", "nom", "ville"], "header": False,
        "fields": {"email": {"column": 1, "type": "email"}, "city": {"column": 3}},
    }
    found, _ = run(template, [(1, ["a@b.fr", "A", "Lyon"])], header=None)
    assert found == [(1, "a@b.fr", {"email": "a@b.fr", "city": "Lyon"})]


def test_trailing_delimiter_is_tolerated(demo_template):
    found, outcome = run(demo_template, [(2, ["a@b.fr", "A", "B", "C", ""])],
                         [*HEADER, ""])
    assert len(found) == 1
    assert outcome.rejections == []


@pytest.mark.parametrize(("cells", "reason", "column"), [
    (["a@b.fr", "A"], "expected 4 cells, found 2", None),
    (["a@b.fr", "A", "B", "C", "D"], "expected 4 cells, found 5", None),
    (["", "A", "B", "C"], "required field email is empty", "E-mail"),
    (["nope", "A", "B", "C"], "invalid e-mail 'nope'", "E-mail"),
    (["a@b.fr", "A\udce9", "B", "C"], "bytes b'\\xe9' are not valid utf-8", None),
])
def test_bad_rows_are_rejected_with_line_and_reason(demo_template, cells, reason, column):
    found, outcome = run(demo_template, [(9, cells)])
    assert found == []
    [rejection] = outcome.rejections
    assert (rejection.line, rejection.column) == (9, column)
    assert reason in rejection.reason
    assert rejection.cells == tuple(cells)


def test_default_and_trim_and_clear(demo_template):
    template = with_options(demo_template, empty_cells="clear")
    template["fields"]["city"]["default"] = "Paris"
    template["fields"]["first_name"]["trim"] = False
    found, _ = run(template, [(2, ["a@b.fr", " A ", "", ""])])
    assert found[0][2] == {"email": "a@b.fr", "first_name": " A ", "last_name": None,
                           "city": "Paris"}


@pytest.mark.parametrize(("policy", "kept", "skipped", "rejected"), [
    ("last_wins", [2, 3], 0, []),
    ("first_wins", [2], 1, []),
    ("reject", [2], 0, ["duplicate of line 2 (email a@b.fr)"]),
])
def test_duplicates_policy(demo_template, policy, kept, skipped, rejected):
    template = with_options(demo_template, duplicates=policy)
    rows = [(2, ["a@b.fr", "A", "", ""]), (3, ["A@B.fr", "B", "", ""])]
    found, outcome = run(template, rows)
    assert [line for line, _, _ in found] == kept
    assert outcome.skipped == skipped
    assert [r.reason for r in outcome.rejections] == rejected


def test_a_row_s_text_is_the_document_of_its_fields():
    template = {"columns": ["mail", "b", "long", "n", "d", "e"], "match_on": "email", "fields": {
        "email": {"column": "mail", "type": "email"}, "zeta": {"column": "b", "type": "boolean"},
        "a_long_name": {"column": "long"}, "n": {"column": "n", "type": "integer"},
        "d": {"column": "d", "type": "date", "format": "%d/%m/%Y"}, "é": {"column": "e"}}}
    rows = [(2, ["a@b.fr", "oui", ' say "hi"\\ ', "1 234", "02/03/2001", "\u0001é"]),
            (3, ["c@d.fr", "", "", "", "", ""])]
    found = list(contacts(plan(template, template["columns"]), rows, Outcome()))
    assert [orjson.loads(c.text) for c in found] == [
        {"zeta": True, "a_long_name": 'say "hi"\\', "n": 1234, "d": "2001-03-02",
         "é": "\u0001é"},
        {},
    ]
    assert [c.text for c in found] == [document(orjson.loads(c.text)) for c in found]


def test_rejection_as_dict():
    assert Rejection(3, "bad", "E-mail", "x").as_dict() == {
        "line": 3, "column": "E-mail", "value": "x", "reason": "bad"}


def test_a_chunk_crosses_between_processes_whole(demo_template):
    # Given a chunk whose rows have cells holding the separator its trip joins cells with
    rows = [(2, ["a@x.fr", "Jo", "", "Lyon"]), (3, ["b@x.fr", "A\x1fB", "x", "\x1f"]),
            (4, ["bad", "", "", ""]), (5, ["c@x.fr", "Zoé", "Dupont", ""])]
    chunk = next(chunks(plan(demo_template, HEADER), rows, 10))
    # When it is pickled and unpickled, as between the reading and the importing process
    back = pickle.loads(pickle.dumps(chunk))
    # Then every contact, cell and rejection is the same
    def described(chunk):
        return ([(c.line, list(c.cells), c.key, c.keys, c.text, c.cleared)
                 for c in chunk.contacts], chunk.rejections, chunk.rows)
    assert described(back) == described(chunk)
    assert [c.cells for c in back.contacts][1] == ["b@x.fr", "A\x1fB", "x", "\x1f"]
    assert len(back.contacts) == 3 and len(back.rejections) == 1


def stored_as(plan, rows):
    """A fingerprints lookup of contacts last written by `rows`, and the keys it was asked."""
    stored = {cells[0].strip().lower(): plan.fingerprint("\x1f".join(cells).encode())
              for _, cells in rows}
    asked = []

    def fingerprints(values):
        asked.append(set(values))
        return lambda: {value: stored[value] for value in values if value in stored}

    return fingerprints, asked


def test_a_row_that_last_wrote_its_contact_is_not_converted(demo_template):
    plan_ = plan(demo_template, HEADER)
    kept, changed = (2, ["a@x.fr", "Jo", "", "Lyon"]), (3, ["b@x.fr", "Al", "", "Nice"])
    fingerprints, asked = stored_as(plan_, [kept, (3, ["b@x.fr", "Al", "", "Paris"])])
    # When a file of one row as stored and one changed is read with the stored fingerprints
    chunk = next(chunks(plan_, [kept, changed], 10, fingerprints))
    # Then the first is only counted, the second converted
    assert (chunk.same, chunk.rows, asked) == (1, 2, [{"a@x.fr", "b@x.fr"}])
    assert [c.line for c in chunk.contacts] == [3]
    assert chunk.contacts[0].fingerprint == plan_.fingerprint(b"b@x.fr\x1fAl\x1f\x1fNice")


def test_a_row_after_another_of_its_key_is_converted(demo_template):
    # Given a contact last written by a row, which comes again after another row of its key
    plan_ = plan(demo_template, HEADER)
    row = ["a@x.fr", "Jo", "", "Lyon"]
    fingerprints, _ = stored_as(plan_, [(2, row)])
    rows = [(2, ["a@x.fr", "Jo", "", "Nice"]), (3, row), (4, row)]
    # Then it is converted, since the row before may have changed its contact, and so is
    # the one after it
    chunk = next(chunks(plan_, rows, 10, fingerprints))
    assert (chunk.same, [c.line for c in chunk.contacts]) == (0, [2, 3, 4])
    # and so it is when the other row comes in a chunk before it
    found = list(chunks(plan_, rows, 1, fingerprints))
    assert [c.same for c in found] == [0, 0, 0]


def test_fingerprints_are_looked_up_while_they_pay(demo_template):
    # Given a file whose first chunk holds no contact stored, and the rest all stored
    plan_ = plan(demo_template, HEADER)
    rows = [(n, [f"{n}@x.fr", "Jo", "", "Lyon"]) for n in range(2, 2 + 40)]
    fingerprints, asked = stored_as(plan_, rows[2:])
    found = list(chunks(plan_, rows, 2, fingerprints))
    # Then after the first chunk (and the second, asked for before the first was checked)
    # the chunks are read without lookups for a while, then with lookups again
    assert len(found) == 20 and LOOKUP_PAUSE == 16
    assert [c.same for c in found] == [0, 2] + [0] * 15 + [2] * 3
    assert len(asked) == 5


def test_a_fingerprint_depends_on_the_template_columns_and_libraries(demo_template,
                                                                    monkeypatch):
    row = b"a@x.fr\x1fJo\x1f\x1fLyon"
    one = plan(demo_template, HEADER).fingerprint(row)
    assert one == plan(demo_template, HEADER).fingerprint(row)
    assert one != plan(demo_template, HEADER).fingerprint(row + b" ")
    assert one != plan(with_options(demo_template, mode="update_only"), HEADER).fingerprint(row)
    assert one != plan(with_options(demo_template, header={"extra_columns": "ignore"}),
                       [*HEADER, "x"]).fingerprint(row)
    monkeypatch.setattr(planning, "LIBRARIES", (("phonenumbers", "0.0.1"),))
    assert one != plan(demo_template, HEADER).fingerprint(row)


@pytest.mark.parametrize(("unfinished", "cut"), [
    (None, None),  # a line break ends the file
    (Unfinished(7, 4, quoted=False), None),  # a complete row, no line break after it
    (Unfinished(7, 5, quoted=False), None),  # a trailing delimiter
    (Unfinished(7, 3, quoted=False), 7),
    (Unfinished(7, 1, quoted=False), 7),
    (Unfinished(7, 4, quoted=True), 7),  # the file ends inside a quoted cell
])
def test_a_file_is_cut_when_its_last_record_lacks_cells_or_ends_inside_quotes(
        demo_template, unfinished, cut):
    assert plan(demo_template, HEADER).cut(unfinished) == cut


def test_a_file_without_header_is_cut_by_the_template_s_columns():
    template = {"file": "c.csv", "columns": ["mail", "nom", "ville"], "header": False,
                "fields": {"email": {"column": 1, "type": "email"}}}
    assert plan(template, None).cut(Unfinished(3, 2, quoted=False)) == 3
    assert plan(template, None).cut(Unfinished(3, 3, quoted=False)) is None


def test_a_header_of_more_columns_than_a_template_may_have_is_refused_at_once(demo_template):
    # Given a header of 100,000 columns, the template's among them
    template = with_options(demo_template, header={"extra_columns": "ignore"})
    header = [*HEADER, *(f"c{n}" for n in range(100_000))]
    # Then it is refused, naming the cap, before its columns are compared
    with pytest.raises(HeaderMismatch, match=r"^the header has 100004 columns, more than the "
                                             r"2000 a template may have$"):
        plan(template, header)


def test_a_header_of_as_many_columns_as_a_template_may_have_is_matched(demo_template):
    # Given a template of the most columns, and a file of them in another case
    columns = [f"Column {n}" for n in range(2000)]
    template = {"file": "c.csv", "columns": columns, "header": {"match": "ignore_case_and_spaces"},
                "fields": {"email": {"column": columns[-1], "type": "email"},
                           "city": {"column": columns[1]}}}
    # Then each field is found in its column
    steps = plan(template, [column.upper() for column in columns]).steps
    assert [(s.name, s.index) for s in steps] == [("email", 1999), ("city", 1)]
    # And a missing column is named, as is a repeated one
    with pytest.raises(HeaderMismatch, match=r"missing 'Column 1'; .*repeated 'COLUMN 0'"):
        plan(template, ["COLUMN 0", *(c.upper() for c in columns[2:]), "COLUMN 0"])


def test_a_nul_character_rejects_its_row_only(demo_template):
    # Given a row holding a NUL between two good ones
    rows = [(2, ["a@x.fr", "Jo", "", "Lyon"]), (3, ["b@x.fr", "Al", "Du\x00pont", "Nice"]),
            (4, ["c@x.fr", "Zoé", "", ""])]
    found, outcome = run(demo_template, rows)
    # Then it is rejected with its line, its column and the reason; the others are contacts
    assert [line for line, _, _ in found] == [2, 4]
    assert [r.as_dict() for r in outcome.rejections] == [
        {"line": 3, "column": "Nom", "value": None, "reason": "contains a NUL character"}]
    assert outcome.rejections[0].cells == tuple(rows[1][1])


def test_a_nul_character_in_a_key_is_never_looked_up(demo_template):
    # Given a re-uploaded row whose e-mail holds a NUL (the database would refuse the lookup)
    plan_ = plan(demo_template, HEADER)
    fingerprints, asked = stored_as(plan_, [(2, ["a@x.fr", "Jo", "", "Lyon"])])
    rows = [(2, ["a@x.fr", "Jo", "", "Lyon"]), (3, ["b\x00@x.fr", "Al", "", ""])]
    # Then only the other key is asked for, and the row is rejected
    chunk = next(chunks(plan_, rows, 10, fingerprints))
    assert asked == [{"a@x.fr"}]
    assert (chunk.same, [r.line for r in chunk.rejections]) == (1, [3])


def test_where_a_file_was_cut_crosses_between_processes(demo_template):
    chunk = next(chunks(plan(demo_template, HEADER), [(2, ["a@x.fr", "Jo", "", "Lyon"])], 10))
    chunk.cut = 2
    assert pickle.loads(pickle.dumps(chunk)).cut == 2
