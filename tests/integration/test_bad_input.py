"""Bad and unusual input through the real DAG: every recording ends in a known state.

A day holding broken, odd and re-uploaded recordings is processed; none stalls the rest,
none is lost, and `callscribe status` shows each state with its reason.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from datetime import date

import numpy as np
import pytest
import soundfile as sf
import soxr
import sqlalchemy as sa

from callscribe.audit import audit_day
from callscribe.discovery import day_prefix
from callscribe.samples import sample_dir
from tests import chaos

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 14)


def _speech(rate: int, channels: int = 1, speech_on: tuple[int, ...] = (0,)) -> np.ndarray:
    x, sr = sf.read(sample_dir() / "call-0003.wav", dtype="float32")
    x = soxr.resample(x, sr, rate).astype(np.float32)
    out = np.zeros((len(x), channels), np.float32)
    for c in speech_on:
        out[:, c] = x
    return out


def _wav(x: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def _inputs() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expected status)."""
    good = _wav(_speech(8000), 8000, "ULAW")
    lying = bytearray(good)
    data_at = lying.find(b"data")
    struct.pack_into("<I", lying, data_at + 4, 50_000_000)  # says far more audio than there is
    odd_codec = bytearray(_wav(_speech(8000), 8000))
    struct.pack_into("<H", odd_codec, 20, 0x1234)  # a format tag no decoder knows
    mp3 = (sample_dir() / "call-0002.mp3").read_bytes()
    return {
        "zero bytes.wav": (b"", "quarantined"),
        "not audio.wav": (b"Dear customer, your invoice is attached." * 50, "quarantined"),
        "notes.txt": (b"agent notes", "quarantined"),
        "odd codec.wav": (bytes(odd_codec), "quarantined"),
        "truncated.wav": (good[: len(good) // 2 + 1], "done"),
        "lying header.wav": (bytes(lying), "done"),
        "corrupt.mp3": (mp3[:30000] + bytes(range(256)) * 40, "done"),  # garbage after ~7 s
        "silence.wav": (_wav(np.zeros((8000 * 10, 1), np.float32), 8000), "done"),
        "too short.wav": (_wav(_speech(8000)[:1600], 8000), "done"),
        "rate 11025.wav": (_wav(_speech(11025), 11025), "done"),
        "rate 22050.wav": (_wav(_speech(22050), 22050), "done"),
        "rate 44100.wav": (_wav(_speech(44100), 44100), "done"),
        "rate 48000.flac": (_flac(_speech(48000), 48000), "done"),
        "six channels.wav": (_wav(_speech(16000, 6, (0, 3)), 16000), "done"),
        "appel client é ü 1.wav": (good, "done"),
    }


def _flac(x: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="FLAC")
    return buf.getvalue()


def _states(pg) -> dict[str, dict]:
    with pg.connect() as c:
        rows = c.execute(sa.text(
            "SELECT r.id, r.object_key, r.status, r.last_error, r.channels, r.duration_s, "
            "(SELECT count(*) FROM segments s WHERE s.recording_id = r.id) AS segments "
            "FROM recordings r WHERE call_date = :d ORDER BY id"), {"d": DAY}).all()
    return {r.object_key.rsplit("/", 1)[1] + (f"#{r.id}" if r.status == "superseded" else ""): dict(r._mapping)
            for r in rows}


@pytest.fixture(scope="module")
def first_run(stack, s3, pg):
    from callscribe.cli import run_day

    prefix = day_prefix("calls/", DAY)
    cases = _inputs()
    for name, (data, _) in cases.items():
        s3.put_bytes(s3.uri(prefix + name), data)
    dr = run_day(DAY)
    return cases, dr


def test_every_input_ends_in_its_expected_state_with_a_reason(first_run, s3, pg):
    cases, dr = first_run
    assert str(dr.state).endswith("success")
    states = _states(pg)
    assert set(states) == set(cases)  # nothing lost, nothing twice
    for name, (_, expected) in cases.items():
        got = states[name]
        assert got["status"] == expected, (name, got)
        if expected != "done":
            assert got["last_error"], name
    entry = chaos.record("bad and odd input, one day", [audit_day(s3, pg, DAY)], len(cases), 0)
    assert entry["lost"] == 0 and entry["duplicates"] == 0, entry["details"]


def test_what_each_odd_input_gives(first_run, pg):
    states = _states(pg)
    assert "empty object" in states["zero bytes.wav"]["last_error"]
    assert states["silence.wav"]["segments"] == 0 and states["too short.wav"]["segments"] == 0
    for name in ("rate 11025.wav", "rate 22050.wav", "rate 44100.wav", "rate 48000.flac", "appel client é ü 1.wav"):
        assert states[name]["segments"] > 0, name
    six = states["six channels.wav"]
    assert six["channels"] == 6 and six["segments"] > 0
    with pg.connect() as c:
        speakers = dict(c.execute(sa.text("SELECT DISTINCT channel, speaker FROM segments WHERE recording_id = :r"),
                                  {"r": six["id"]}).all())
    assert speakers == {0: "agent", 3: "channel3"}
    assert states["lying header.wav"]["duration_s"] < 60  # read what is there, not what the header claims
    corrupt = states["corrupt.mp3"]
    assert 3 < corrupt["duration_s"] < 15 and corrupt["segments"] > 0  # the part before the damage
    with pg.connect() as c:
        meta = c.execute(sa.text("SELECT metadata FROM recordings WHERE id = :r"), {"r": corrupt["id"]}).scalar_one()
    assert "decoded the first" in meta["decode_warning"]


def test_reupload_with_new_content_supersedes_atomically(first_run, s3, pg):
    from callscribe.cli import run_day

    name = "appel client é ü 1.wav"
    before = _states(pg)[name]
    s3.put_bytes(s3.uri(day_prefix("calls/", DAY) + name), _wav(_speech(8000) * 0.5, 8000, "ALAW"))
    dr = run_day(DAY)
    assert str(dr.state).endswith("success")
    states = _states(pg)
    old = states[f"{name}#{before['id']}"]
    new = states[name]
    assert old["status"] == "superseded" and old["segments"] == 0
    assert new["status"] == "done" and new["segments"] > 0 and new["id"] != before["id"]
    with pg.connect() as c:
        live = c.execute(sa.text("SELECT count(*) FROM analytics.calls WHERE object_key LIKE :k AND status = 'done'"),
                         {"k": f"%/{name}"}).scalar_one()
    assert live == 1
    entry = chaos.record("re-upload with new content", [audit_day(s3, pg, DAY)], 1, 0)
    assert entry["lost"] == 0 and entry["duplicates"] == 0, entry["details"]


def test_status_command_shows_states_and_reasons(first_run):
    out = subprocess.run([sys.executable, "-m", "callscribe.cli", "status", "--date", str(DAY),
                          "--json"], capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    by_key = {r["key"].rsplit("/", 1)[1]: r for r in rows}
    assert by_key["odd codec.wav"]["status"] == "quarantined" and by_key["odd codec.wav"]["error"]
    assert {r["status"] for r in rows} >= {"done", "quarantined"}
    # Reasons are for people: no Python object addresses.
    assert not [r for r in rows if r["error"] and ("0x" in r["error"] or "object at" in r["error"])], rows
    # A file cut short is transcribed, and status says it was cut short.
    assert by_key["truncated.wav"]["status"] == "done" and "truncated" in by_key["truncated.wav"]["warning"]
    assert "decoded the first" in by_key["corrupt.mp3"]["warning"]
    table = subprocess.run([sys.executable, "-m", "callscribe.cli", "status", "--date",
                            str(DAY)], capture_output=True, text=True, check=True).stdout
    assert "warning: file is truncated" in table
