"""What arrives in the bucket while a run lists it: a run's verdict against the real store's clock.

Object stores stamp Last-Modified in whole seconds (AWS S3's listings, SeaweedFS here), while a
run's listing time is the database's, to the microsecond. An upload that lands after the listing,
in the same second as its start, carries a time before it.
"""

from __future__ import annotations

import dataclasses
import time
import unicodedata
import urllib.request
from datetime import UTC, date, timedelta

import pytest
import sqlalchemy as sa

from callscribe import discovery, reporting
from callscribe.audit import run_verdict
from callscribe.config import key_hash
from callscribe.discovery import day_prefix
from callscribe.samples import distinct_copy

pytestmark = pytest.mark.integration
FIRST_DAY = date(2035, 2, 1)  # no other test uses these days


def _modified(s3, key: str):
    return next(o.last_modified for o in s3.list(key) if o.key == key)


def _db_now(pg):
    with pg.connect() as c:
        return c.execute(sa.text("SELECT clock_timestamp()")).scalar_one()


def _early_in_a_second_after(pg, moment) -> None:
    """Until the database's clock is in a whole second later than ``moment``, early in it."""
    for _ in range(400):
        now = _db_now(pg)
        if now.replace(microsecond=0) > moment and now.microsecond < 200_000:
            return
        time.sleep(0.01)
    pytest.fail("the database clock never reached the start of a later second")


def test_an_upload_in_the_listings_own_second_is_late_not_lost(stack, s3, pg):
    """The run is not red for a call it could not have seen; one it did see and lost still is."""
    for attempt in range(5):
        day = FIRST_DAY + timedelta(days=attempt)
        prefix = day_prefix("calls/", day)
        run = f"same-second-{attempt}"
        s3.put_bytes(s3.uri(prefix + "seen.txt"), b"agent notes")  # quarantined at registration: final
        _early_in_a_second_after(pg, _modified(s3, prefix + "seen.txt"))
        reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny")  # as `discover` does
        discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
        s3.put_bytes(s3.uri(prefix + "late.wav"), b"RIFF arrived after the listing")
        listed_at, late_at = reporting.listed_at(pg, run), _modified(s3, prefix + "late.wav")
        if late_at.replace(microsecond=0) == listed_at.replace(microsecond=0):
            break  # the scenario: listed, then uploaded, within one second
    else:
        pytest.fail("could not list and upload within one second in 5 tries")
    assert late_at <= listed_at  # the store's whole second reads as before the listing

    # A registration that went missing: seen.txt was listed (uploaded a second before) and is lost.
    with pg.begin() as c:
        c.execute(sa.text("DELETE FROM recordings WHERE object_key = :k"), {"k": prefix + "seen.txt"})
    discovery.close_run(pg, run)

    verdict = run_verdict(s3, pg, run, [day], "calls/", listed_at)
    audit = verdict.audits[0]
    assert audit.lost == [f"{prefix}seen.txt: not registered"], audit.as_dict()
    assert audit.arrived_later == 1, audit.as_dict()

    # The next run finds the late upload.
    discovery.discover(s3, pg, day, "calls/", f"{run}-next", is_live=lambda r: False)
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM recordings WHERE object_key = :k"),
                         {"k": prefix + "late.wav"}).scalar_one() == 1


@pytest.mark.parametrize("db_ahead_s", [30, -30], ids=["database-ahead", "store-ahead"])
def test_the_verdict_compares_the_stores_times_with_the_stores_clock(stack, s3, pg, db_ahead_s):
    """Postgres and the object store keep their own clocks, and NTP lets them drift apart. With the
    database's clock ahead, a call uploaded just after the listing reads as uploaded before it (a
    false red); with the store's ahead, a call the run lost reads as uploaded after it (a false
    green). The run's cut-off is taken on the store's clock, where the objects' times are."""
    day = date(2089, 1, 10 if db_ahead_s > 0 else 11)
    prefix = day_prefix("calls/", day)
    run = f"skewed-clocks-{db_ahead_s}"
    s3.put_bytes(s3.uri(prefix + "seen.txt"), b"agent notes")  # quarantined at registration: final
    _early_in_a_second_after(pg, _modified(s3, prefix + "seen.txt"))
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)  # as `discover` does
    discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    s3.put_bytes(s3.uri(prefix + "late.wav"), b"RIFF arrived after the listing")
    with pg.begin() as c:  # what the database recorded, had its clock been that far off the store's
        c.execute(sa.text("UPDATE pipeline_runs SET listed_at = listed_at + make_interval(secs => :s) "
                          "WHERE run_id = :r"), {"s": db_ahead_s, "r": run})
        c.execute(sa.text("DELETE FROM recordings WHERE object_key = :k"), {"k": prefix + "seen.txt"})
    discovery.close_run(pg, run)

    audit = run_verdict(s3, pg, run, [day], "calls/", reporting.listed_at(pg, run)).audits[0]
    assert audit.lost == [f"{prefix}seen.txt: not registered"], audit.as_dict()
    assert audit.arrived_later == 1, audit.as_dict()


# Keys a recorder or a person produces, each with the state its run must leave it in.
ODD_DAY = date(2035, 3, 1)
ODD_KEYS = {
    "with space.wav": "done",
    "plus+sign.wav": "done",
    "percent%41.wav": "done",
    "hash#and?query.wav": "done",
    unicodedata.normalize("NFC", "appel-é.wav"): "done",
    unicodedata.normalize("NFD", "appel-é.wav"): "done",  # the same name, another byte form: another object
    "Case.wav": "done",
    "case.wav": "done",
    "UPPER.WAV": "done",
    "agentX/nested.wav": "done",
    "agentY/deeper/nested.wav": "done",
    "no-extension": "quarantined",
    "wrong-extension.m4a": "quarantined",
    "empty.wav": "quarantined",
}


def _short_call() -> bytes:
    import io

    import soundfile as sf

    from callscribe.samples import sample_dir

    x, sr = sf.read(sample_dir() / "call-0003.wav", dtype="int16")
    buf = io.BytesIO()
    sf.write(buf, x[: sr * 6], sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_odd_keys_end_in_a_known_state_and_play(stack, s3, pg):
    from fastapi.testclient import TestClient

    from callscribe.audit import audit_day
    from callscribe.local_run import run_day
    from callscribe.search_page import create_app

    prefix = day_prefix("calls/", ODD_DAY)
    # Each key another call (identical uploads of a day are one call, transcribed once).
    audio = {name: distinct_copy(_short_call(), ".wav", i) for i, name in enumerate(ODD_KEYS)}
    for name in ODD_KEYS:
        s3.put_bytes(s3.uri(prefix + name), b"" if name == "empty.wav" else audio[name])
    s3.put_bytes(s3.uri(prefix + "agentZ/"), b"")  # a folder marker (the S3 console's "Create folder")
    dr = run_day(ODD_DAY)
    assert str(dr.state).rsplit(".", 1)[-1].lower() == "success"
    with pg.connect() as c:
        rows = c.execute(sa.text("SELECT id, object_key, status, last_error, loads FROM recordings "
                                 "WHERE call_date = :d"), {"d": ODD_DAY}).all()
    got = {r.object_key.removeprefix(prefix): r for r in rows}
    assert sorted(got) == sorted(ODD_KEYS)  # each object once, the folder marker not a call
    for name, expected in ODD_KEYS.items():
        r = got[name]
        assert r.status == expected, r
        assert (r.loads == 1) if expected == "done" else bool(r.last_error), r
    assert audit_day(s3, pg, ODD_DAY).clean
    client = TestClient(create_app(require_login=False))
    for name, expected in ODD_KEYS.items():
        if expected != "done":
            continue
        played = client.post("/api/play", json={"recording_id": got[name].id, "start": 1.0})
        assert played.status_code == 200, (name, played.text)
        with urllib.request.urlopen(played.json()["url"].split("#t=")[0], timeout=30) as resp:
            assert resp.read() == audio[name], name


def test_a_call_deleted_between_listing_and_chunking_fails_with_a_reason_then_reads_deleted(stack, s3, pg):
    from tests.integration.helpers import run_through

    day = date(2035, 3, 2)
    prefix = day_prefix("calls/", day)
    for i, name in enumerate(("kept.wav", "gone.wav")):
        s3.put_bytes(s3.uri(prefix + name), distinct_copy(_short_call(), ".wav", i))
    verdict = run_through(s3, pg, day, "deleted-r1", before_chunk=lambda: s3.delete(s3.uri(prefix + "gone.wav")))
    assert verdict.ok, verdict.problems()
    with pg.connect() as c:
        states = dict(c.execute(sa.text("SELECT object_key, status FROM recordings WHERE call_date = :d"),
                                {"d": day}).all())
        reason = c.execute(sa.text("SELECT last_error FROM recordings WHERE object_key = :k"),
                           {"k": prefix + "gone.wav"}).scalar_one()
    assert states == {prefix + "kept.wav": "done", prefix + "gone.wav": "failed"}
    assert "NoSuchKey" in reason or "not exist" in reason, reason
    assert run_through(s3, pg, day, "deleted-r2").ok
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT status FROM recordings WHERE object_key = :k"),
                         {"k": prefix + "gone.wav"}).scalar_one() == "deleted"


def test_a_listing_that_lags_its_writes_still_gives_the_stores_clock(stack, s3, pg, monkeypatch):
    """A store whose listing does not show the object just written yet: its HEAD gives the time."""
    day, run = date(2090, 3, 1), "clock-not-listed"
    real = s3.list
    monkeypatch.setattr(s3, "list", lambda prefix, *a, **kw: (o for o in real(prefix, *a, **kw)
                                                              if not o.key.endswith("/listed")))
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)
    with pg.connect() as c:
        row = c.execute(sa.text("SELECT listed_at, store_listed_at FROM pipeline_runs WHERE run_id = :r"),
                        {"r": run}).one()
    assert row.store_listed_at is not None and abs((row.store_listed_at - row.listed_at).total_seconds()) < 5


def test_a_discover_run_again_reads_the_stores_clock_again_or_falls_back(stack, s3, pg, monkeypatch):
    """`discover` retried, or cleared in the UI: the new listing's time replaces the old one's; a try
    whose read of the store's clock failed leaves the database's time, never the earlier try's."""
    day, run = date(2090, 3, 2), "clock-listed-again"

    def stored():
        with pg.connect() as c:
            return c.execute(sa.text("SELECT listed_at, store_listed_at FROM pipeline_runs WHERE run_id = :r"),
                             {"r": run}).one()

    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)
    first = stored().store_listed_at
    _early_in_a_second_after(pg, first)
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)
    assert stored().store_listed_at > first and reporting.listed_at(pg, run) == stored().store_listed_at

    def down(key):
        raise ConnectionError("store down")

    monkeypatch.setattr(s3, "clock", down)
    with pytest.raises(ConnectionError):
        reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)
    row = stored()
    assert row.store_listed_at is None and reporting.listed_at(pg, run) == row.listed_at


def _start_multipart(s3, key: str) -> tuple[str, object]:
    """An upload begun and not finished, as a recorder's multipart upload of a long call is while it
    runs: one part sent (the minimum part size), the upload id and the part's etag returned."""
    upload_id = s3.client._create_multipart_upload(s3.bucket, key, {})
    etag = s3.client._upload_part(s3.bucket, key, b"\0" * (5 * 1024 * 1024), None, upload_id, 1)
    return upload_id, etag


def _finish_multipart(s3, key: str, upload) -> None:
    from minio.datatypes import Part

    upload_id, etag = upload
    s3.client._complete_multipart_upload(s3.bucket, key, upload_id, [Part(1, etag)])


def _stamped_at_start(monkeypatch, s3, started: dict) -> None:
    """Lists as AWS S3 does: an object made by a multipart upload carries the time the upload
    began, not the time it was finished (SeaweedFS, here, stamps the finish)."""
    real = s3.list

    def listing(prefix, *a, **kw):
        for o in real(prefix, *a, **kw):
            yield dataclasses.replace(o, last_modified=started[o.key]) if o.key in started else o

    monkeypatch.setattr(s3, "list", listing)


def test_a_multipart_upload_the_listing_saw_under_way_is_late_even_stamped_at_its_start(
        stack, s3, pg, monkeypatch):
    """A long call uploaded in parts, begun before the run listed its day and finished after: the
    listing could not show it, and a store that stamps such an object with the upload's start (AWS
    S3) dates it before the listing. The run is not red for it; a call it did see and lost still is,
    and so is one lost under a key where an older, abandoned upload lingers."""
    day, run = date(2091, 1, 5), "multipart-under-way"
    prefix = day_prefix("calls/", day)
    abandoned = _start_multipart(s3, prefix + "seen.txt")  # a recorder's upload that died, weeks ago
    time.sleep(2.1)
    s3.put_bytes(s3.uri(prefix + "seen.txt"), b"agent notes")  # quarantined at registration: final
    upload = _start_multipart(s3, prefix + "long.wav")
    started = {u_key: at for u_key, at in s3.uploads_in_flight(prefix) if u_key == prefix + "long.wav"}
    _early_in_a_second_after(pg, _modified(s3, prefix + "seen.txt"))
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)
    discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)  # notes the uploads under way
    _finish_multipart(s3, prefix + "long.wav", upload)
    _stamped_at_start(monkeypatch, s3, started)
    assert _modified(s3, prefix + "long.wav") < reporting.listed_at(pg, run)
    with pg.begin() as c:  # a registration that went missing: seen.txt was listed and is lost
        c.execute(sa.text("DELETE FROM recordings WHERE object_key = :k"), {"k": prefix + "seen.txt"})
    discovery.close_run(pg, run)

    audit = run_verdict(s3, pg, run, [day], "calls/", reporting.listed_at(pg, run)).audits[0]
    assert audit.lost == [f"{prefix}seen.txt: not registered"], audit.as_dict()
    assert audit.arrived_later == 1, audit.as_dict()
    s3.client._abort_multipart_upload(s3.bucket, prefix + "seen.txt", abandoned[0])

    # Only the key's hash is kept (an erasure need not find keys in the runs' records).
    with pg.connect() as c:
        kept = c.execute(sa.text("SELECT uploads_in_flight::text FROM pipeline_runs WHERE run_id = :r"),
                         {"r": run}).scalar_one()
    assert "long.wav" not in kept and key_hash(prefix + "long.wav") in kept


def test_a_store_that_will_not_list_uploads_under_way_leaves_the_verdict_as_it_was(stack, s3, pg, monkeypatch):
    """No permission to list multipart uploads (s3:ListBucketMultipartUploads), or a store without
    the call: the run lists as before, with nothing excused, and says so in its log."""
    from minio.error import S3Error

    day, run = date(2091, 1, 6), "multipart-refused"

    real = s3.client._execute

    def refused(method, bucket, *a, query_params=None, **kw):
        if method == "GET" and "uploads" in (query_params or {}):  # the bucket's policy refuses only this
            raise S3Error(None, "AccessDenied", "Access Denied.", "calls/", "req", "host", s3.bucket)
        return real(method, bucket, *a, query_params=query_params, **kw)

    monkeypatch.setattr(s3.client, "_execute", refused)
    assert s3.uploads_in_flight(day_prefix("calls/", day)) is None
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)
    discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    assert reporting.uploads_in_flight(pg, run) is None
    assert reporting.listed_at(pg, run) is not None


def test_the_uploads_under_way_are_read_with_their_keys_as_written(stack, s3):
    """Every upload under way under the prefix, odd keys and two under one key among them, none
    beside it; each with the time it began."""
    prefix = day_prefix("calls/", date(2091, 1, 7))
    keys = [prefix + "a.wav", prefix + "a.wav", prefix + "b c+d%41.wav", prefix + "é & <x>.wav"]
    uploads = [(k, _start_multipart(s3, k)) for k in keys]
    beside = day_prefix("calls/", date(2091, 1, 8)) + "a.wav"
    other = _start_multipart(s3, beside)
    try:
        found = s3.uploads_in_flight(prefix)
        assert sorted(k for k, _ in found) == sorted(keys)
        assert all(abs(began - _db_now_utc()) < timedelta(minutes=5) for _, began in found), found
    finally:
        for k, (upload_id, _) in uploads:
            s3.client._abort_multipart_upload(s3.bucket, k, upload_id)
        s3.client._abort_multipart_upload(s3.bucket, beside, other[0])
    assert s3.uploads_in_flight(prefix) == []


def _db_now_utc():
    from datetime import datetime

    return datetime.now(UTC)


def test_an_upload_under_way_at_the_clock_and_finished_before_the_listing_is_owed(stack, s3, pg, monkeypatch):
    """A multipart upload under way when the run read the store's clock, finished before the run's
    listing reached its day (the listing of the lookback days, erasure.reapply and the registration
    of earlier days come between): the listing shows it, the run takes it, and a run that then loses
    it is red, though a store that stamps it with its start (AWS S3) dates it before the clock."""
    day, run = date(2092, 1, 5), "multipart-finished-before-listing"
    prefix = day_prefix("calls/", day)
    upload = _start_multipart(s3, prefix + "long.wav")
    started = {k: at.replace(microsecond=0)  # whole seconds, as AWS S3 lists them
               for k, at in s3.uploads_in_flight(prefix) if k == prefix + "long.wav"}
    time.sleep(2.1)  # the clock read is seconds after the upload began
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)
    _finish_multipart(s3, prefix + "long.wav", upload)  # before the listing
    _stamped_at_start(monkeypatch, s3, started)
    discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM recordings WHERE object_key = :k AND last_run_id = :r"),
                         {"k": prefix + "long.wav", "r": run}).scalar_one() == 1  # the listing showed it
    with pg.begin() as c:  # a registration that went missing: long.wav was listed and is lost
        c.execute(sa.text("DELETE FROM recordings WHERE object_key = :k"), {"k": prefix + "long.wav"})
    discovery.close_run(pg, run)

    audit = run_verdict(s3, pg, run, [day], "calls/", reporting.listed_at(pg, run)).audits[0]
    assert audit.lost == [f"{prefix}long.wav: not registered"], audit.as_dict()
    assert audit.arrived_later == 0, audit.as_dict()


def test_a_call_put_whole_in_the_second_an_abandoned_upload_of_its_key_began_is_owed(stack, s3, pg):
    """A recorder whose multipart upload died and that sent the call again at once, in one PUT (no
    parts): the abandoned upload lingers, under way, begun in the second the object is stamped with.
    The object is no upload's: the run listed it, and a run that loses it is red."""
    day, run = date(2092, 1, 6), "multipart-abandoned-then-put"
    prefix = day_prefix("calls/", day)
    for _ in range(5):
        abandoned = _start_multipart(s3, prefix + "call.wav")
        s3.put_bytes(s3.uri(prefix + "call.wav"), b"RIFF sent again whole")
        began = next(at for k, at in s3.uploads_in_flight(prefix) if k == prefix + "call.wav")
        if abs(_modified(s3, prefix + "call.wav") - began) <= timedelta(seconds=1):
            break
        s3.client._abort_multipart_upload(s3.bucket, prefix + "call.wav", abandoned[0])
    else:
        pytest.fail("could not begin an upload and put the key within a second in 5 tries")
    try:
        time.sleep(2.1)  # the run lists seconds later
        reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)
        discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
        with pg.begin() as c:  # a registration that went missing: call.wav was listed and is lost
            c.execute(sa.text("DELETE FROM recordings WHERE object_key = :k"), {"k": prefix + "call.wav"})
        discovery.close_run(pg, run)
        audit = run_verdict(s3, pg, run, [day], "calls/", reporting.listed_at(pg, run)).audits[0]
        assert audit.lost == [f"{prefix}call.wav: not registered"], audit.as_dict()
    finally:
        s3.client._abort_multipart_upload(s3.bucket, prefix + "call.wav", abandoned[0])


def test_a_backfill_listing_after_an_upload_the_live_run_saw_under_way_takes_it_once(stack, s3, pg, monkeypatch):
    """A live run and a backfill of the same day: a multipart upload under way at the live run's listing,
    stamped with its start (AWS S3), finishes before the backfill lists. The live run's excuse is its own:
    the backfill takes the call, transcribes it once, and both runs are green; a call the backfill
    listed and lost is still red in its verdict, though the live run's excuse names its key."""
    from callscribe import loading
    from tests.integration.copies import call_bytes
    from tests.integration.helpers import chunk_to_shards, loads, record_clean

    day, live, backfill = date(2098, 7, 1), "multipart-live", "backfill__multipart"
    prefix = day_prefix("calls/", day)
    s3.put_bytes(s3.uri(prefix + "short.wav"), call_bytes(951))
    upload_id = s3.client._create_multipart_upload(s3.bucket, prefix + "long.wav", {})
    part = s3.client._upload_part(s3.bucket, prefix + "long.wav", call_bytes(952), None, upload_id, 1)
    started = {k: at.replace(microsecond=0) for k, at in s3.uploads_in_flight(prefix) if k == prefix + "long.wav"}
    time.sleep(2.1)
    reporting.run_listed(pg, live, "transcribe_calls", day, "whisper-tiny", store=s3)
    mine = discovery.discover(s3, pg, day, "calls/", live, is_live=lambda r: False)
    _finish_multipart(s3, prefix + "long.wav", (upload_id, part))
    _stamped_at_start(monkeypatch, s3, started)
    reporting.run_listed(pg, backfill, "transcribe_calls", day, "whisper-tiny", store=s3)
    theirs = discovery.discover(s3, pg, day, "calls/", backfill, is_live=lambda r: r == live)
    assert len(mine) == 1 and len(theirs) == 1 and set(mine) != set(theirs), (mine, theirs)
    for run, ids in ((backfill, theirs), (live, mine)):
        _, jobs, _ = chunk_to_shards(s3, pg, ids, run)
        loading.load_jobs(s3, pg, jobs, run)
        discovery.close_run(pg, run)
    for run in (live, backfill):
        verdict = run_verdict(s3, pg, run, [day], "calls/", reporting.listed_at(pg, run), is_live=lambda r: False)
        assert verdict.ok, (run, verdict.as_dict())
    assert loads(pg, day) == {"short.wav": 1, "long.wav": 1}
    record_clean("a multipart upload seen under way by a live run, taken by a backfill", s3, pg, day, 2, 0)
    with pg.begin() as c:  # the backfill's registration gone missing: its listing had long.wav
        c.execute(sa.text("DELETE FROM recordings WHERE object_key = :k"), {"k": prefix + "long.wav"})
    audit = run_verdict(s3, pg, backfill, [day], "calls/", reporting.listed_at(pg, backfill)).audits[0]
    assert audit.lost == [f"{prefix}long.wav: not registered"], audit.as_dict()
