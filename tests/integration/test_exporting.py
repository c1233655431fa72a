"""`callscribe export` and the search page's download, against the loaded analyst calls (redacted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import srt
import webvtt
from fastapi.testclient import TestClient

from callscribe.exporting import file_name
from callscribe.search_page import create_app
from tests.integration.conftest import CALLS

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
