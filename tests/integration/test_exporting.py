"""`callscribe export` and the search page's download, against the loaded analyst calls (redacted)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date

import pytest
import srt
import webvtt
from fastapi.testclient import TestClient

from callscribe.exporting import file_name
from callscribe.search_page import create_app
from tests.integration.conftest import CALLS
from tests.integration.helpers import load_call

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "callscribe.cli", "export"]


def test_a_date_range_as_subtitles_and_json_lines(stack, loaded, tmp_path):
    out = subprocess.run([*CLI, "--date", "2026-10-01", "--to", "2026-10-03", "--format", "srt", "--out",
                          str(tmp_path / "srt")], capture_output=True, text=True, check=True)
    files = sorted((tmp_path / "srt").glob("*.srt"))
    keys = [f"calls/2026/10/0{i}/analyst-{n}.wav" for i, n in enumerate("abc", start=1)]
    assert [f.name for f in files] == [file_name(k, "srt") for k in keys], out.stdout
    cues = list(srt.parse(files[0].read_text()))
    assert [c.content.split(": ", 1)[0] for c in cues] == [s[1] for s in sorted(CALLS["a"]["segments"],
                                                                                   key=lambda s: s[2])]
    whole = "\n".join(f.read_text() for f in files)
    assert "4111" not in whole and "[redacted]" in whole  # what analysts see
    subprocess.run([*CLI, "--date", "2026-10-01", "--to", "2026-10-03", "--format", "jsonl", "--out",
                    str(tmp_path / "j")], capture_output=True, text=True, check=True)
    calls = [json.loads(line) for line in (tmp_path / "j" / "transcripts.jsonl").read_text().splitlines()]
    assert [c["key"].rsplit("/", 1)[1] for c in calls] == ["analyst-a.wav", "analyst-b.wav", "analyst-c.wav"]
    assert all(line["text"] for c in calls for line in c["lines"])


def test_a_range_the_wrong_way_round_is_refused(stack):
    out = subprocess.run([*CLI, "--date", "2026-10-03", "--to", "2026-10-01", "--out", "/tmp/never"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "before" in out.stderr


def test_the_page_downloads_one_call(stack, loaded):
    client = TestClient(create_app(require_login=False))
    key = f"calls/{CALLS['b']['day']:%Y/%m/%d}/analyst-b.wav"
    r = client.get("/api/export", params={"key": key, "format": "vtt"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/vtt")
    assert f'filename="{file_name(key, "vtt")}"' in r.headers["content-disposition"]
    captions = webvtt.from_string(r.text).captions
    assert [c.voice for c in captions] == ["customer", "agent"]
    assert client.get("/api/export", params={"key": "calls/nope.wav"}).status_code == 404
    assert client.get("/api/export", params={"key": key, "format": "docx"}).status_code == 422


MID_DAY = date(2100, 1, 5)


def test_a_call_erased_while_an_export_runs_is_not_written_after_its_erasure(stack, pg, s3, tmp_path,
                                                                              monkeypatch):
    """A call erased (a data subject's request) after a long range's export began, before the export
    read it, must not be written out after the erasure (the export read the whole range in one query
    at its start). Pages of two calls: the third is read after the first is written."""
    from callscribe import exporting
    from callscribe.erasure import erase
    from callscribe.exporting import calls_between, export

    monkeypatch.setattr(exporting, "PAGE", 2)
    keys = [f"calls/2100/01/05/mid-export-{n}.wav" for n in "abc"]
    for n, key in enumerate(keys):
        load_call(pg, s3, key, MID_DAY, [(0, "agent", 1.0, 2.0, f"Hello from call {'abc'[n]}."),
                                         (1, "customer", 3.0, 4.0, "My name is Jane Roe.")])

    def erasing_after_the_first(calls):
        for i, call in enumerate(calls):
            yield call
            if i == 0:  # the first call written: the last one is erased now
                erase(s3, pg, keys[-1], actor="dpo@example.com")

    written = export(erasing_after_the_first(calls_between(pg, MID_DAY, MID_DAY)), "srt", tmp_path)
    names = {p.name for p in written}
    assert {file_name(k, "srt") for k in keys[:2]} <= names
    assert file_name(keys[-1], "srt") not in names, "the call erased during the export was written after its erasure"


REUPLOAD_DAY = date(2100, 1, 7)


def test_a_call_uploaded_again_while_an_export_runs_is_written_once(stack, pg, s3, tmp_path, monkeypatch):
    """A page ends on a call; the call is uploaded again and its new version transcribed (a newer
    recording id, so after the page's end) before the next page is read: the export must not write
    the key a second time, the old transcript and the new one as two calls."""
    import uuid

    import sqlalchemy as sa

    from callscribe import exporting
    from callscribe.exporting import calls_between

    monkeypatch.setattr(exporting, "PAGE", 1)
    run = uuid.uuid4().hex[:8]
    key, later = (f"calls/2100/01/07/reupload-{run}-{n}.wav" for n in "ab")
    old = load_call(pg, s3, key, REUPLOAD_DAY, [(0, "agent", 1.0, 2.0, "The first upload.")], etag="v1")
    load_call(pg, s3, later, REUPLOAD_DAY, [(0, "agent", 1.0, 2.0, "Another call.")])
    calls = calls_between(pg, REUPLOAD_DAY, REUPLOAD_DAY)
    seen = []
    for call in calls:
        seen.append(call)
        if call.recording_id == old:  # uploaded again and transcribed while the export writes this one
            load_call(pg, s3, key, REUPLOAD_DAY, [(0, "agent", 1.0, 2.0, "The second upload.")], etag="v2")
            with pg.begin() as c:
                c.execute(sa.text("UPDATE recordings SET status = 'superseded' WHERE id = :i"), {"i": old})
    mine = [(c.key, c.lines[0].text) for c in seen if run in c.key]
    assert mine == [(key, "The first upload."), (later, "Another call.")], mine
