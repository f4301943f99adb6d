"""Completion markers, without a server: which arrivals are ready, what a marker announces."""

from agent.completion import announced, marked_file, sort_out
from agent.incoming import Arrival

MARKERS = {("acme", "contacts.csv"): ".done", ("acme", "orders.csv"): ".ok.txt"}


def marker_of(account, file):
    return MARKERS.get((account, file))


def arrival(n, file, account="acme"):
    return Arrival(f"20261125-080000-00000{n}-abcd", account, file)


def test_a_marker_is_recognised_by_its_templates_suffix():
    assert marked_file(arrival(1, "contacts.csv.done"), marker_of) == "contacts.csv"
    assert marked_file(arrival(1, "orders.csv.ok.txt"), marker_of) == "orders.csv"
    assert marked_file(arrival(1, "contacts.csv"), marker_of) is None
    assert marked_file(arrival(1, "contacts.csv.ok"), marker_of) is None
    assert marked_file(arrival(1, "contacts.csv.done", account="globex"), marker_of) is None


def test_a_file_without_completion_is_ready_at_once():
    files = [arrival(1, "other.csv"), arrival(2, "contacts.csv", account="globex")]
    assert sort_out(files, marker_of) == ([(files[0], None), (files[1], None)], [], [])


def test_a_file_with_completion_waits_for_its_marker():
    data = arrival(1, "contacts.csv")
    assert sort_out([data], marker_of) == ([], [data], [])
    marker = arrival(2, "contacts.csv.done")
    assert sort_out([data, marker], marker_of) == ([(data, marker)], [], [])


def test_ready_files_keep_their_arrival_order():
    # A held file, then a plain one, then the held file's marker: the held one arrived first
    data, other = arrival(1, "contacts.csv"), arrival(2, "other.csv")
    marker = arrival(3, "contacts.csv.done")
    assert sort_out([data, other, marker], marker_of).ready == [(data, marker), (other, None)]


def test_a_marker_with_no_file_waiting_is_discarded():
    # Before its file (uploaded in the wrong order), or alone
    marker, data = arrival(1, "contacts.csv.done"), arrival(2, "contacts.csv")
    ready, held, [(discarded, reason)] = sort_out([marker, data], marker_of)
    assert (ready, held, discarded) == ([], [data], marker)
    assert reason == "no upload of contacts.csv is waiting for it"


def test_a_marker_completes_the_latest_upload_and_the_earlier_one_is_superseded():
    first, second, marker = (arrival(1, "contacts.csv"), arrival(2, "contacts.csv"),
                             arrival(3, "contacts.csv.done"))
    ready, held, [(discarded, reason)] = sort_out([first, second, marker], marker_of)
    assert (ready, held, discarded) == ([(second, marker)], [], first)
    assert reason == f"superseded by import {second.import_id} before its marker arrived"


def test_two_nights_two_markers():
    files = [arrival(1, "contacts.csv"), arrival(2, "contacts.csv.done"),
             arrival(3, "contacts.csv"), arrival(4, "contacts.csv.done")]
    assert sort_out(files, marker_of).ready == [(files[0], files[1]), (files[2], files[3])]


def test_a_marker_announces_rows_and_sha256():
    digest = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
    assert announced(f"rows=1200\r\nSHA256 = {digest}\n") == (
        {"rows": 1200, "sha256": digest.lower()}, [])
    assert announced("rows=3") == ({"rows": 3}, [])


def test_a_marker_may_be_empty_or_hold_anything_else():
    assert announced("") == ({}, [])
    assert announced("OK\n2026-11-25T08:00:00\n") == ({}, [])


def test_a_malformed_check_is_ignored_and_reported():
    assert announced("rows=12a\nsha256=abc\n") == ({}, ["rows=12a", "sha256=abc"])
