"""db.copy_rows against the real Postgres: awkward text round-trips, and a failure while making
the rows is raised as itself with nothing copied."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from callscribe import db

pytestmark = pytest.mark.integration

TEXTS = ['a "quoted" word, and a comma', "a line\nbreak", "a bare\rcarriage return", "tab\there", "back\\slash",
         "", "ümlaut ☎", "\\N", "\\", "two\ttabs\tand\\N"]


def test_awkward_text_round_trips_and_none_is_null(pg):
    with pg.begin() as c:
        c.execute(sa.text("CREATE TEMP TABLE copied (i integer, t text) ON COMMIT DROP"))
        n = db.copy_rows(c, "copied", ["i", "t"], [*enumerate(TEXTS), (len(TEXTS), None)])
        got = c.execute(sa.text("SELECT t FROM copied ORDER BY i")).scalars().all()
    assert n == len(TEXTS) + 1 and got == [*TEXTS, None]


def test_an_error_while_making_rows_is_raised_as_itself_and_nothing_is_copied(pg):
    def rows():
        for i in range(5000):  # past the first batches the server has already taken
            if i == 3000:
                raise ValueError("redaction failed on row 3000")
            yield i, f"row {i}"

    with pg.connect() as c:
        c.execute(sa.text("CREATE TEMP TABLE copied_fail (i integer, t text)"))
        c.commit()
        with pytest.raises(ValueError, match="row 3000"):
            with c.begin():
                db.copy_rows(c, "copied_fail", ["i", "t"], rows())
        assert c.execute(sa.text("SELECT count(*) FROM copied_fail")).scalar_one() == 0
