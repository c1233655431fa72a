"""Redaction at load, through the real loader and the analyst role: what analysts can and cannot see."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.loading import NEXT_WORDS
from tests.integration.helpers import load_call
from tests.integration.test_analysts import _login

pytestmark = pytest.mark.integration

DAY = date(2026, 9, 17)
KEY = "calls/2026/09/17/redact-1.wav"
SEGMENTS = [  # a card number dictated over two segments, a phone number with dots, spoken digits
    (1, "customer", 1.0, 4.0, "Sure, my card is 4111"),
    (1, "customer", 4.5, 8.0, "1111 1111 1111 and my phone is 555.123.4567."),
    (1, "customer", 9.0, 12.0, "The code is four one one one five."),
    (0, "agent", 2.0, 5.0, "That will be 12.99 a month."),
]
METADATA = {"agent-id": "r1", "queue": "billing", "caller-number": "+1 555 123 4567", "decode_warning": "none"}


@pytest.fixture(scope="module")
def redacted_loaded(pg, s3) -> int:
    return load_call(pg, s3, KEY, DAY, SEGMENTS, metadata=METADATA)


def test_analysts_see_masked_segments_transcripts_and_search(stack, pg, redacted_loaded):
    conn = _login(stack, pg, "analyst")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT text, next_text FROM analytics.segments WHERE recording_id = %s AND channel = 1 "
                        "ORDER BY seq", (redacted_loaded,))
            rows = cur.fetchall()
            assert [t for t, _ in rows] == ["Sure, my card is [redacted]",
                                            "[redacted] and my phone is [redacted].",
                                            "The code is [redacted]."]
            # The next segment's first words (the pair vector's part of it), as analysts see them.
            assert rows[0][1] == " ".join(rows[1][0].split()[:NEXT_WORDS]) == "[redacted] and my"
            cur.execute("SELECT text FROM analytics.transcripts WHERE recording_id = %s AND channel = 1",
                        (redacted_loaded,))
            whole = cur.fetchone()[0]
            assert "4111" not in whole and "555" not in whole and "four one" not in whole
            cur.execute("SELECT text FROM analytics.segments WHERE recording_id = %s AND channel = 0",
                        (redacted_loaded,))
            assert cur.fetchone()[0] == "That will be 12.99 a month."  # amounts stay
            for probe in ("4111", "1111", "4567", "five"):
                cur.execute("SELECT count(*) FROM analytics.search(%s, %s, %s, fuzzy => false)", (probe, DAY, DAY))
                assert cur.fetchone()[0] == 0, probe
    finally:
        conn.close()


def test_the_raw_text_stays_for_the_privileged_role(stack, pg, redacted_loaded):
    conn = _login(stack, pg, "privileged")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT text FROM public.segments WHERE recording_id = %s AND channel = 1 ORDER BY seq",
                        (redacted_loaded,))
            assert [r[0] for r in cur.fetchall()] == [s[4] for s in SEGMENTS if s[0] == 1]
    finally:
        conn.close()


def test_calls_show_approved_metadata_keys_and_a_masked_error(stack, pg, redacted_loaded):
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET last_error = 'callback to 555 123 4567 failed' WHERE id = :r"),
                  {"r": redacted_loaded})
    conn = _login(stack, pg, "analyst")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT metadata, last_error FROM analytics.calls WHERE recording_id = %s",
                        (redacted_loaded,))
            metadata, error = cur.fetchone()
            assert metadata == {"agent-id": "r1", "queue": "billing", "decode_warning": "none"}
            assert error == "callback to [redacted] failed"
    finally:
        conn.close()
    with pg.begin() as c:  # the owner approves one more key: it shows
        c.execute(sa.text("INSERT INTO analyst_metadata_keys VALUES ('caller-number')"))
        try:
            meta = c.execute(sa.text("SELECT metadata FROM analytics.calls WHERE recording_id = :r"),
                             {"r": redacted_loaded}).scalar_one()
            assert meta["caller-number"] == "+1 555 123 4567"
        finally:
            c.execute(sa.text("DELETE FROM analyst_metadata_keys WHERE key = 'caller-number'"))
