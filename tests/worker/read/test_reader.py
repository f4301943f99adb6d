"""Reading ahead, in a thread or in a process of its own: the same items, the same errors."""

import os
import subprocess
import sys
from multiprocessing.connection import Connection

import psycopg
import pytest

from bench import mixed
from bench.datasets import DATASETS
from schemas import template_with_defaults
from tests.worker.conftest import HEADER, exported, spool
from worker.importer import Importer
from worker.read import reader
from worker.read.rows import CHUNK_BYTES, _blocks
from worker.write.postgres import array_literal


@pytest.fixture
def separate(importer, home):
    """An Importer that reads every file, however small, in a process of its own."""
    return Importer(home, importer.store, separate_process_bytes=0, chunk_rows=2)


def test_a_file_read_in_a_process_imports_like_any_other(separate, home):
    rows = "".join(f"c{i}@x.fr;N{i};;Lyon\r\n" for i in range(5)) + "bad;;;\r\n"
    record = separate.run(spool(home, "acme", HEADER + rows))
    assert (record["status"], record["created"], record["rejected_rows"]) == ("imported", 5, 1)
    assert record["rejections"][0]["line"] == 7
    assert exported(separate.store, "acme")["c4@x.fr"]["first_name"] == "N4"


def test_a_header_mismatch_found_in_the_reading_process_is_reported(separate, home):
    record = separate.run(spool(home, "acme", "E-mail;Prénom;Nom;Town\r\njo@x.com;;;\r\n"))
    assert record["status"] == "rejected"
    assert "line 1: header differs from the template" in record["reason"]
    assert record["encoding"] == "utf-8"


def test_a_cut_multibyte_file_read_in_a_process_is_rejected(separate, home, registry,
                                                            demo_template):
    registry.set_template("acme", demo_template | {"format": {"encoding": "utf-16"}})
    data = (HEADER + "jo@x.com;Jo;;\r\n").encode("utf-16")[:-1]
    record = separate.run(spool(home, "acme", data))
    assert record["status"] == "rejected"
    assert "not valid utf-16" in record["reason"]


def test_a_cut_file_read_in_a_process_is_rejected_whole(separate, home):
    # Given a file of three chunks, its last row cut inside a quoted cell
    rows = "".join(f"c{i}@x.fr;N{i};;Lyon\r\n" for i in range(4)) + 'c4@x.fr;N4;;"Ly'
    record = separate.run(spool(home, "acme", HEADER + rows))
    # Then its last chunk, sent by the reading process, says where it was cut
    assert (record["status"], record["rows"]) == ("rejected", 5)
    assert "the file ends in the middle of line 6" in record["reason"]
    assert exported(separate.store, "acme") == {}


def test_a_key_holding_a_nul_character_is_not_looked_up(separate, home):
    # Given contacts imported, so that a re-upload's keys are looked up in the store
    rows = "".join(f"c{i}@x.fr;N{i};;Lyon\r\n" for i in range(4))
    assert separate.run(spool(home, "acme", HEADER + rows))["created"] == 4
    # When a row of the re-upload has a NUL in its e-mail (PostgreSQL refuses it in a query)
    record = separate.run(spool(home, "acme", HEADER + rows + "c\x00@x.fr;N;;Lyon\r\n"))
    # Then that row alone is rejected
    assert (record["status"], record["unchanged"], record["rejected_rows"]) == ("imported", 4, 1)
    assert record["rejections"][0]["reason"] == "contains a NUL character"


def test_a_reading_process_that_dies_fails_the_import_with_its_exit_code():
    receiving, sending = os.pipe()
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    os.close(sending)  # the process never sent anything
    with pytest.raises(RuntimeError, match=r"reading the file stopped \(exit code 3\)"):
        list(reader._received(Connection(receiving, writable=False), process))


def test_values_with_quotes_backslashes_tabs_and_newlines_are_stored_as_they_are(importer, home):
    # Such cells go through COPY's text format and array literals, which escape them
    city = 'Saint-"Quote" \\ back\tslash\nline'
    content = HEADER + f'jo@x.com;Jo;;"{city.replace(chr(34), chr(34) * 2)}"\r\n'
    record = importer.run(spool(home, "acme", content))
    assert (record["status"], record["created"]) == ("imported", 1), record["rejections"]
    assert exported(importer.store, "acme") == {"jo@x.com": {"first_name": "Jo", "city": city}}
    again = importer.run(spool(home, "acme", content + "am@y.fr;;;\r\n"))
    assert (again["unchanged"], again["created"]) == (1, 1)  # found again by its e-mail


def test_keys_with_quotes_and_backslashes_are_looked_up_as_they_are(postgres_server_url):
    values = ['E"1', "E\\2", "E,3", "NULL", "{E4}", " E5 "]
    with psycopg.connect(postgres_server_url) as connection:
        found = connection.execute("SELECT %s::text[]", [array_literal(values)]).fetchone()
    assert found[0] == values


def test_a_chunk_sees_the_contacts_the_chunk_before_writes_while_they_are_written(
        importer, home):
    # Chunks of one row: each row's lookup runs before the previous row's writes are sent,
    # so a contact created or changed by the previous row must be waited for and found.
    one_by_one = Importer(home, importer.store, chunk_rows=1)
    rows = "jo@x.com;Jo;;Lyon\r\njo@x.com;Jo;;Paris\r\nam@y.fr;Am;;Nice\r\njo@x.com;Jo;;Rome\r\n"
    record = one_by_one.run(spool(home, "acme", HEADER + rows))
    assert (record["status"], record["created"], record["updated"]) == ("imported", 2, 2)
    assert exported(importer.store, "acme")["jo@x.com"]["city"] == "Rome"


@pytest.mark.parametrize("first", ["a", "b"])
def test_a_key_moving_between_two_contacts_in_one_chunk_ends_with_its_new_holder(
        importer, home, registry, demo_template, first):
    fields = demo_template["fields"] | {"external_id": {"column": "Nom"}}
    registry.set_template("acme", demo_template | {"fields": fields})
    stored = {"a": "a@x.fr;A;E1;Lyon\r\n", "b": "b@x.fr;B;E2;Nice\r\n"}
    second = "b" if first == "a" else "a"
    importer.run(spool(home, "acme", HEADER + stored[first] + stored[second]))
    # b lets E2 go, then a takes it
    moves = "b@x.fr;B;E3;Nice\r\na@x.fr;A;E2;Lyon\r\n"
    record = importer.run(spool(home, "acme", HEADER + moves))
    assert (record["status"], record["updated"]) == ("imported", 2), record["reason"]
    contacts = exported(importer.store, "acme")
    assert (contacts["a@x.fr"]["external_id"], contacts["b@x.fr"]["external_id"]) == ("E2", "E3")


def _read(path, template, processes):
    """What `produce` makes of the file at `path`: its chunks' rows, contacts, rejections."""
    chunks = list(reader.produce(path, template_with_defaults(template), 250,
                                 processes=processes))[2:]
    return ([(c.rows, c.same, c.skipped) for c in chunks],
            [(c.line, c.key, c.keys, c.text, c.cleared, c.fingerprint, c.cells)
             for chunk in chunks for c in chunk.contacts],
            [r for chunk in chunks for r in chunk.rejections])


@pytest.mark.parametrize("duplicates", ["last_wins", "reject"])
def test_rows_converted_in_several_processes_are_those_converted_in_one(tmp_path, duplicates):
    # Given a customers' file of every mess the benchmark makes (bench/mixed.py), with
    # duplicates, read in chunks of 250 rows
    path = tmp_path / "clients.csv"
    mixed.write(path, seed=7, count=2000)
    with path.open("ab") as file:  # the first rows again: duplicates across chunks
        file.write(b"".join(path.read_bytes().splitlines(keepends=True)[1:300]))
    template = DATASETS["mixed"].template | {"duplicates": duplicates, "empty_cells": "clear"}
    # When its rows are converted in three processes of their own, or where they are read
    # Then every chunk, contact and rejection is the same, in the same order
    alone = _read(path, template, 1)
    assert _read(path, template, 3) == alone
    assert len(alone[1]) > 1500 and len(alone[2]) > 100


@pytest.mark.parametrize(("row_bytes", "rows"), [(100, 8000), (400, CHUNK_BYTES // 400)])
def test_a_chunk_of_wide_rows_holds_fewer_of_them(row_bytes, rows):
    # Given rows of `row_bytes` bytes each, read as a file is
    read = 0

    def numbered():
        nonlocal read
        for line in range(1, 40_001):
            read += row_bytes
            yield line, [f"c{line}@x.fr"]

    # When they are taken by blocks of at most 8,000 rows
    sizes = [len(block) for block in _blocks(numbered(), 8000, lambda: read)]
    # Then after the first block, each holds about CHUNK_BYTES of the file, 8,000 rows at most
    assert sizes[0] == 8000 and set(sizes[1:-1]) == {rows}
    assert sum(sizes) == 40_000
