"""The filter of key values (those of an import's chunks before, of a file's rows before): it
may only err towards a lookup or a conversion, never miss a value it was given."""

from hypothesis import given
from hypothesis import strategies as st

from worker.contact import KeyFilter

values = st.lists(st.text(max_size=12), max_size=50)


@given(added=values, others=values)
def test_a_value_added_is_always_found(added, others):
    found = KeyFilter()
    for value in added:
        found.meets(value)
    assert all(found.meets(value) for value in added)
    met = KeyFilter()
    met.met(set(added))
    assert met.met(set(added) | set(others)) >= set(added)
    assert all(met.meets(value) for value in others)  # met now


def test_a_value_never_added_is_mostly_not_found():
    found = KeyFilter()
    found.update(f"{n}@x.fr" for n in range(10_000))
    found.update(f"+336{n:08}" for n in range(10_000))
    others = {f"{n}@y.fr" for n in range(10_000)}
    assert len(KeyFilter().met(others)) < 100  # each met for the first time
    assert len(found.met(others)) < 100
