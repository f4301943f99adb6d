"""The filter of key values (an import's written ones, a file's read ones): it may only err
towards a lookup or a conversion, never miss a value it was given."""

from hypothesis import given
from hypothesis import strategies as st

from worker.template import KeyFilter

values = st.lists(st.text(max_size=12), max_size=50)


@given(added=values, others=values)
def test_a_value_added_is_always_found(added, others):
    found = KeyFilter()
    for value in added:
        found.add(value)
    assert found.among(set(added) | set(others)) >= set(added)
    assert all(value in found for value in added)


def test_a_value_never_added_is_mostly_not_found():
    found = KeyFilter()
    for n in range(10_000):
        found.add(f"{n}@x.fr")
        found.add(f"+336{n:08}")
    others = {f"{n}@y.fr" for n in range(10_000)}
    assert len(found.among(others)) < 100
    assert sum(value in found for value in others) < 100
