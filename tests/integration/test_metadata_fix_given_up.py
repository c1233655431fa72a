"""A mono call renamed by a metadata fix whose new transcript fails three times: what README's
"Metadata fixed after upload" says of it (red until then, the old transcript kept, a reprocess
transcribes it again)."""

from __future__ import annotations

from datetime import date

import pytest

from callscribe import pipeline
from tests.integration.helpers import run_through
from tests.integration.test_metadata_fixes import _call, _fix_metadata, _mono_call, _put

pytestmark = pytest.mark.integration


def test_a_relabel_that_fails_three_times_keeps_the_old_transcript_until_a_reprocess(stack, s3, pg, monkeypatch):
    day = date(2037, 12, 8)
    key = _put(s3, day, "m.wav", _mono_call(), {"first-speaker": "agent"})
    assert run_through(s3, pg, day, "scheduled__metagiveup-1").ok
    _fix_metadata(s3, key, {"first-speaker": "customer"})

    def broken(*args, **kw):
        raise ValueError("chunker broke")

    monkeypatch.setattr(pipeline, "chunk_recording", broken)
    verdicts = [run_through(s3, pg, day, f"scheduled__metagiveup-2-{n}") for n in (1, 2, 3)]
    monkeypatch.undo()
    assert [v.ok for v in verdicts] == [False, False, True], [v.problems() for v in verdicts]
    assert any("m.wav" in p and "fixed" in p for p in verdicts[0].problems()), verdicts[0].problems()
    kept = _call(pg, key)
    assert (kept.status, kept.first, kept.loads, kept.attempts) == ("done", "agent", 1, 3), kept
    assert "kept the earlier transcript" in kept.last_error and "chunker broke" in kept.last_error, kept
    assert run_through(s3, pg, day, "scheduled__metagiveup-3").ok
    assert _call(pg, key).first == "agent"  # given up: a plain run leaves it
    again = run_through(s3, pg, day, "scheduled__metagiveup-4", reprocess=True)
    assert again.ok, again.problems()
    assert _call(pg, key).first == "customer"
