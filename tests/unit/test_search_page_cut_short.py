"""How the search page words a search the database cut short: its login's time limit, or a cancel.

Both are SQLSTATE 57014; only the server's message text told them apart, in English, and a server
whose ``lc_messages`` is another language words it otherwise. The page tells them apart by how long
the search ran against the login's ``statement_timeout``. (tests/integration/test_analyst_sessions.py
cuts real searches short both ways.)
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from callscribe.search_page import _cut_short


class _ServerError(Exception):
    def __init__(self, text: str, code: str):
        super().__init__(text)
        self.pgcode = code


def _error(text: str, code: str = "57014") -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, _ServerError(text, code))


LIMIT = "ran longer than the database allows"
CANCEL = "was cancelled in the database"


@pytest.mark.parametrize(("text", "ran_s", "limit_ms", "said"), [
    ("canceling statement due to statement timeout", 1.02, 1000, LIMIT),
    ("Anweisung wegen Zeitüberschreitung abgebrochen", 1.02, 1000, LIMIT),  # lc_messages = 'de_DE'
    ("canceling statement due to user request", 0.3, 60_000, CANCEL),
    ("Anweisung wegen Benutzeranforderung abgebrochen", 0.3, 60_000, CANCEL),
    ("canceling statement due to user request", 5.0, 0, CANCEL),  # no limit on the login: a cancel
    # The limit could not be read: the server's words, as the only thing left to go by.
    ("canceling statement due to statement timeout", 1.0, None, LIMIT),
    ("canceling statement due to user request", 1.0, None, CANCEL),
], ids=["limit", "limit-de", "cancel", "cancel-de", "no-limit", "unknown-limit", "unknown-cancel"])
def test_a_cancelled_search_is_told_from_one_past_the_logins_limit_by_time(text, ran_s, limit_ms, said):
    cut = _cut_short(_error(text), "ana", ran_s, limit_ms)
    assert cut is not None and cut.status_code == 503 and said in cut.detail, cut
    assert "narrow the dates" in cut.detail


def test_a_lock_timeout_and_other_errors():
    cut = _cut_short(_error("Sperrzeitüberschreitung", "55P03"), "ana", 1.0, None)
    assert cut is not None and "lock_timeout" in cut.detail
    assert _cut_short(_error("relation does not exist", "42P01"), "ana", 0.1, 1000) is None
