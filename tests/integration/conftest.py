"""Shared data for the analyst tests: three calls loaded through the real loader; the page
tests' headless Chromium (Debian's, via Playwright); a database a test can restore."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from callscribe.loading import load_shards
from callscribe.manifests import SEGMENT_COLUMNS, RecordingEntry, ShardInfo, to_parquet
from callscribe.samples import sample_dir

CALLS = {
    "a": dict(day=date(2026, 10, 1), agent="a1", duration=120.0, segments=[
        (0, "agent", 0.5, 4.0, "Thank you for calling Acme, this is Siobhan speaking."),
        (1, "customer", 10.0, 12.0, "Yes hello, I want to cancel"),
        (1, "customer", 12.5, 15.0, "my account today please."),
        (1, "customer", 20.0, 26.0, "My card number is 4111 1111 1111 1111 and it expires soon."),
        (0, "agent", 25.0, 30.0, "The refund will arrive in five days."),
    ]),
    "b": dict(day=date(2026, 10, 2), agent="a2", duration=30.0, segments=[
        (1, "customer", 1.0, 4.0, "Please cancel my account now."),
        (0, "agent", 5.0, 8.0, "I can offer you a discount instead."),
    ]),
    "c": dict(day=date(2026, 10, 3), agent="a1", duration=600.0, segments=[
        (1, "customer", 3.0, 9.0, "I want a refund, not a discount."),
        (1, "customer", 10.0, 16.0, "My account number is four five six seven eight nine."),
        (0, "agent", 17.0, 19.0, "The price is 12.99 per month."),
    ]),
}


@pytest.fixture(scope="session")
def loaded(pg, s3) -> dict[str, int]:
    ids = {}
    with pg.begin() as c:
        for name, call in CALLS.items():
            ids[name] = c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, agent_id, status, channels, "
                "duration_s, last_run_id) VALUES ('calls', :k, 'e', :d, :n, :a, 'chunked', 2, :dur, 'analysts') "
                "RETURNING id"),
                {"k": f"calls/{call['day']:%Y/%m/%d}/analyst-{name}.wav", "d": call["day"], "n": name,
                 "a": call["agent"], "dur": call["duration"]}).scalar_one()
    rows = []
    for name, call in CALLS.items():
        seq = {0: 0, 1: 0}
        for ch, speaker, start, end, text in call["segments"]:
            rows.append((ids[name], ch, seq[ch], speaker, start, end, text))
            seq[ch] += 1
    info = ShardInfo(job_id="analysts", run_id="analysts", engine="test", batches=[],
                     recordings=[RecordingEntry(recording_id=i, n_channels=2) for i in ids.values()])
    uri = s3.uri("_callscribe/tests/analysts.parquet")
    s3.put_bytes(uri, to_parquet(pd.DataFrame(rows, columns=SEGMENT_COLUMNS), info))
    audio = (sample_dir() / "call-0001.wav").read_bytes()  # something to play at each key
    for name, call in CALLS.items():
        key = f"calls/{call['day']:%Y/%m/%d}/analyst-{name}.wav"
        s3.put_bytes(s3.uri(key), audio)
        with pg.begin() as c:  # the content "transcribed" is what is there: the page plays only that
            c.execute(sa.text("UPDATE recordings SET etag = :e WHERE id = :i"),
                      {"e": s3.stat("calls", key)[0], "i": ids[name]})
    load_shards(s3, pg, [uri])
    return ids


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def airflow_ui(stack):
    """Airflow's API server, scheduler and DAG processor for one module of UI-action tests
    (helpers.airflow_for_ui_actions); yields the API port and the logs."""
    from tests.integration.helpers import airflow_for_ui_actions

    with airflow_for_ui_actions(stack) as running:
        yield running


@pytest.fixture
def restorable(stack, tmp_path):
    """A callscribe database of the test's own that it can back up and restore, the pipeline pointed
    at it for the test (tests/integration/restore.py)."""
    from tests.integration.restore import restorable_database

    with restorable_database(stack, tmp_path) as r:
        yield r
