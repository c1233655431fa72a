"""A call-center day of many tiny recordings through the real DAG (dag.test()): hang-ups of 0.2 s,
WAVs with a valid header and no audio, an hour of silence, folder markers. Every key ends in a
known state, once; the mapped tasks and the XCom between them stay small.

(Probed by hand at 3,000 tiny files through the pipeline's functions: every one `done`, once, in
about 90 s on 2 cores; the test holds a day's worth of chunk groups, not a day's worth of files.)
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from datetime import date

import numpy as np
import pytest
import soundfile as sf
import sqlalchemy as sa

from callscribe.discovery import day_prefix
from callscribe.samples import sample_dir
from tests.integration.helpers import day_rows, record_clean

pytestmark = pytest.mark.integration
DAY = date(2038, 4, 1)
TINY = int(os.environ.get("CALLSCRIBE_TINY_CALLS", 120))  # groups of 25: 5 chunk tasks
EMPTY = 4  # identical header-only WAVs: one call's bytes, so one quarantined, the rest its copies


def _wav(samples: np.ndarray, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_day(stack, s3, pg):
    from callscribe.cli import run_day

    speech, _ = sf.read(sample_dir() / "call-0003.wav", dtype="int16")
    speech = speech[:, 0] if speech.ndim > 1 else speech
    prefix = day_prefix("calls/", DAY)
    for i in range(TINY):  # 0.2 s each, every one its own bytes (identical ones would be copies)
        at = (i * 397) % (len(speech) - 1600)
        piece = speech[at:at + 1600].copy()
        piece[0] = i
        s3.put_bytes(s3.uri(f"{prefix}hangup-{i:05d}.wav"), _wav(piece))
    for i in range(EMPTY):
        s3.put_bytes(s3.uri(f"{prefix}no-audio-{i}.wav"), _wav(np.zeros(0, np.int16)))
    s3.put_bytes(s3.uri(f"{prefix}silent-hour.wav"), _wav(np.zeros(8000 * 3600, np.int16)))
    s3.put_bytes(s3.uri(f"{prefix}queue-7/"), b"")  # a folder marker
    return run_day(DAY)


def test_every_tiny_recording_ends_in_a_known_state_once(tiny_day, s3, pg):
    assert str(tiny_day.state).endswith("success")
    rows = day_rows(pg, DAY)
    names = Counter(r.object_key.rsplit("/", 1)[1] for r in rows)
    assert len(names) == TINY + EMPTY + 1 and set(names.values()) == {1}, names.most_common(3)
    by = {r.object_key.rsplit("/", 1)[1]: r for r in rows}
    hangups = Counter((r.status, r.loads) for n, r in by.items() if n.startswith("hangup-"))
    assert hangups == Counter({("done", 1): TINY}), hangups
    empties = sorted((r.status, r.last_error or "") for n, r in by.items() if n.startswith("no-audio-"))
    assert [s for s, _ in empties] == ["duplicate"] * (EMPTY - 1) + ["quarantined"], empties
    assert "no audio" in empties[-1][1]
    assert (by["silent-hour.wav"].status, by["silent-hour.wav"].loads) == ("done", 1)
    record_clean("a day of tiny recordings", s3, pg, DAY, TINY + EMPTY + 1, 0)


def test_an_hour_of_silence_reads_as_silence_to_analysts(tiny_day, pg):
    with pg.connect() as c:
        call = c.execute(sa.text("SELECT status, segments, silence_share, duration_s FROM analytics.calls "
                                 "WHERE object_key LIKE :k"), {"k": "%/silent-hour.wav"}).one()
    assert call.status == "done" and call.segments == 0 and float(call.silence_share) == 1.0, call
    assert float(call.duration_s) == 3600.0


def test_the_mapped_tasks_and_their_xcom_stay_small(tiny_day):
    tis = tiny_day.get_task_instances()
    mapped = Counter(ti.task_id for ti in tis if ti.map_index >= 0)
    groups = -(-(TINY + EMPTY + 1) // 25)
    assert mapped["chunk"] == groups, mapped
    assert mapped["transcribe"] == 1, mapped  # seconds of speech: one job, one model load
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        values = session.query(XComModel.task_id, XComModel.value).filter(
            XComModel.dag_id == tiny_day.dag_id, XComModel.run_id == tiny_day.run_id).all()
    sizes = {t: len(v if isinstance(v, str | bytes) else json.dumps(v)) for t, v in values}
    # Only ids and URIs travel: the discover list is a few bytes a recording, nothing grows with audio.
    assert max(sizes.values()) < 20 * (TINY + EMPTY + 1) + 1000, sizes
