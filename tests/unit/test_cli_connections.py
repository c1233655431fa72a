"""A command that reads the bucket, run where only the database's connection is set up, says
which connection is missing and how to set it: not a traceback."""

from __future__ import annotations

import json

from callscribe import cli


def test_a_missing_store_connection_is_named_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_CONN_CALLSCRIBE_POSTGRES", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "x", "password": "y", "schema": "z"}))
    for name in ("AIRFLOW_CONN_CALLSCRIBE_S3", "CALLSCRIBE_S3_ENDPOINT", "CALLSCRIBE_S3_CONN_ID"):
        monkeypatch.delenv(name, raising=False)
    rc = cli.main(["audit", "--date", "2026-11-24"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "callscribe_s3" in err and "AIRFLOW_CONN_" in err and "Traceback" not in err, err
