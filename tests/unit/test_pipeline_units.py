"""Units of the run's plumbing that need no services: groups, worker environment, reasons."""

from __future__ import annotations

import pytest

from callscribe import pipeline
from callscribe.audio import DecodeError, decode
from callscribe.config import S3Settings
from callscribe.discovery import groups, run_days
from callscribe.errors import describe, plain
from callscribe.samples import sample_files


def test_groups_grow_to_stay_within_the_map_limit():
    ids = list(range(100_000))
    out = groups(ids, 25, max_groups=1024)
    assert len(out) <= 1024 and [i for g in out for i in g] == ids
    assert [len(g) for g in groups(list(range(10)), 25, max_groups=1024)] == [10]
    assert [len(g) for g in groups(list(range(6)), 1, max_groups=2)] == [3, 3]
    with pytest.raises(ValueError):
        groups(ids, 25, max_groups=0)


def test_run_days_look_back():
    from datetime import date

    assert run_days(date(2026, 11, 1), 2) == [date(2026, 11, 1), date(2026, 10, 31), date(2026, 10, 30)]
    assert run_days(date(2026, 11, 1)) == [date(2026, 11, 1)]
    with pytest.raises(ValueError):
        run_days(date(2026, 11, 1), -1)


def test_the_worker_gets_what_a_pod_gets_and_nothing_of_airflow():
    s3 = S3Settings(endpoint="s3.local:9000", access_key="AK", secret_key="SK", bucket="calls")
    base = {
        "PATH": "/usr/bin", "HOME": "/home/airflow", "CALLSCRIBE_GRANITE_MODEL_DIR": "/models/g",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:pw@db/airflow",
        "AIRFLOW__API_AUTH__JWT_SECRET": "jwt", "AIRFLOW_CONN_CALLSCRIBE_POSTGRES": "{...}",
        "CALLSCRIBE_PG_PASSWORD": "pw", "CALLSCRIBE_ANALYST_PASSWORD": "pw2", "AWS_SECRET_ACCESS_KEY": "x",
    }
    env = pipeline.worker_environment(s3, base)
    assert env["PATH"] == "/usr/bin" and env["CALLSCRIBE_GRANITE_MODEL_DIR"] == "/models/g"
    assert env["CALLSCRIBE_S3_SECRET_KEY"] == "SK" and env["HF_HUB_OFFLINE"] == "1"
    assert not {k for k in env if k.startswith("AIRFLOW") or "PG" in k or "ANALYST" in k or k.startswith("AWS")}


def test_reasons_are_for_people():
    with pytest.raises(DecodeError) as raised:  # garbage must be refused, not decoded to nothing
        decode(b"RIFF....WAVEfmt garbage" * 20, "calls/x.wav")
    exc = raised.value
    assert "0x" not in str(exc) and "<_io" not in str(exc) and "cannot decode audio" in str(exc)
    assert plain("Error opening <_io.BytesIO object at 0x7f15585379c0>: bad\nmore") == "Error opening the file: bad"
    assert describe(KeyError("k")) == "KeyError: 'k'" and describe(RuntimeError()) == "RuntimeError"


def test_a_truncated_wav_decodes_with_a_warning():
    wav = next(f for f in sample_files() if f.suffix == ".wav").read_bytes()
    whole = decode(wav, "w.wav")
    half = decode(wav[: len(wav) // 2], "w.wav")
    assert whole.warning is None
    assert half.warning and "truncated" in half.warning
    assert half.duration_s < whole.duration_s * 0.6


def test_a_worker_cause_says_what_happened(tmp_path):
    from collections import deque

    err = tmp_path / "error.txt"
    assert pipeline._worker_cause(-9, str(err), deque()).startswith("worker killed by SIGKILL")
    assert pipeline._worker_cause(1, str(err), deque(["x", "Boom: it broke", ""])) == \
        "worker exited with code 1: Boom: it broke"
    err.write_text("ModelDirError: folder is incomplete\n")
    assert pipeline._worker_cause(1, str(err), deque()) == "ModelDirError: folder is incomplete"


def test_every_engine_setting_reaches_a_local_worker():
    """A CALLSCRIBE_* setting the engines read (CALLSCRIBE_NAR_*, CALLSCRIBE_DEVICE, the model folders) but
    the worker's allow-list drops would be set on the Airflow worker and silently ignored by the
    transcription it starts."""
    import re
    from pathlib import Path

    import callscribe.engines

    root = Path(callscribe.engines.__file__).parent
    read = {m for f in root.rglob("*.py") for m in re.findall(r'"(CALLSCRIBE_[A-Z0-9_]+)"', f.read_text())}
    # Read by the chunk tasks (engines.chunk_seconds) and where the DAG is parsed, not by a worker.
    read -= {"CALLSCRIBE_CHUNK_S", "CALLSCRIBE_POD_ENGINE"}
    assert {"CALLSCRIBE_NAR_COMPILE", "CALLSCRIBE_DEVICE"} <= read  # the scan finds what it looks for
    assert read - set(pipeline.WORKER_ENV) == set()
    base = dict.fromkeys(read, "1") | {"PATH": "/usr/bin"}
    env = pipeline.worker_environment(S3Settings(endpoint="s3.local:9000", access_key="AK", secret_key="SK",
                                                 bucket="calls"), base)
    assert {k: env.get(k) for k in read} == dict.fromkeys(read, "1")


def test_a_source_changed_mid_run_names_what_changed():
    from callscribe.reporting import SourceChanged, check_source

    check_source("r", "calls/calls/", "calls/calls/")  # as listed
    check_source("r", None, "calls/calls/")  # a run that never listed: nothing to compare
    with pytest.raises(SourceChanged, match=r"the S3 connection \(its bucket\) was changed"):
        check_source("r", "calls/calls/", "archive/calls/")
    with pytest.raises(SourceChanged, match="the run's prefix .* was changed"):
        check_source("r", "calls/calls/", "calls/imports/")
