"""A row's document is the text PostgreSQL gives back for the same fields: unchanged rows of a
nightly file are found by comparing two strings, never by reading JSON."""

import json

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.contact import document

text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12)
fields = st.dictionaries(text, st.one_of(text, st.booleans(), st.integers(-10**12, 10**12)),
                         max_size=8)


@pytest.fixture(scope="module")
def connection(postgres_server_url):
    with psycopg.connect(postgres_server_url, autocommit=True) as connection:
        yield connection


@settings(max_examples=300, deadline=None)
@given(values=fields)
def test_a_document_is_the_jsonb_text_of_its_fields(connection, values):
    stored = connection.execute("SELECT %s::jsonb::text", [json.dumps(values)]).fetchone()[0]
    assert document(values) == stored


def test_a_document_leaves_out_what_is_erased():
    assert document({"city": "Lyon", "zip": None}) == '{"city": "Lyon"}'
