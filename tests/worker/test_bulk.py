"""The filter of the key values an import wrote: it may only err towards a lookup."""

from hypothesis import given
from hypothesis import strategies as st

from worker.bulk import Written
from worker.changes import Stored

values = st.lists(st.text(max_size=12), max_size=50)


@given(added=values, others=values)
def test_a_written_value_is_always_among_those_the_import_may_have_written(added, others):
    written = Written()
    written.add([Stored(keys={"email": value}) for value in added])
    assert written.among(set(added) | set(others)) >= set(added)


def test_a_value_never_written_is_mostly_not_looked_up():
    written = Written()
    written.add([Stored(keys={"email": f"{n}@x.fr", "phone": f"+336{n:08}"})
                 for n in range(10_000)])
    others = {f"{n}@y.fr" for n in range(10_000)}
    assert len(written.among(others)) < 100
