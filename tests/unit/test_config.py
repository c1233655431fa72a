import json

import pytest

from callscribe import config
from callscribe.discovery import call_id_for, day_prefix, groups, listing_row
from callscribe.storage import ObjectInfo, parse_uri


def test_connections_from_json_env(monkeypatch):
    monkeypatch.delenv("CALLSCRIBE_S3_ENDPOINT", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_CALLSCRIBE_S3", json.dumps({
        "conn_type": "aws", "login": "AKEY", "password": "s3cr3t-value",
        "extra": {"endpoint_url": "https://minio.internal:9000", "bucket": "recordings"}}))
    s3 = config.s3_settings()
    assert (s3.endpoint, s3.secure, s3.bucket, s3.access_key) == ("minio.internal:9000", True, "recordings", "AKEY")
    assert "s3cr3t-value" not in repr(s3)
    env = s3.to_env()
    monkeypatch.setattr(config.os, "environ", env)
    assert config.s3_from_env() == s3


def test_missing_worker_settings_name_the_variable(monkeypatch):
    monkeypatch.setattr(config.os, "environ", {"CALLSCRIBE_S3_BUCKET": "calls"})
    with pytest.raises(RuntimeError, match="CALLSCRIBE_S3_ENDPOINT"):
        config.s3_from_env()
    # Half a key pair is a broken secret, not a request for the default chain.
    monkeypatch.setattr(config.os, "environ", {"CALLSCRIBE_S3_ENDPOINT": "x:1", "CALLSCRIBE_S3_ACCESS_KEY": "AK"})
    with pytest.raises(RuntimeError, match="CALLSCRIBE_S3_SECRET_KEY"):
        config.s3_from_env()
    monkeypatch.setattr(config.os, "environ", {"CALLSCRIBE_S3_ENDPOINT": "x:1", "CALLSCRIBE_S3_SECRET_KEY": "SK"})
    with pytest.raises(RuntimeError, match="CALLSCRIBE_S3_ACCESS_KEY"):
        config.s3_from_env()


def test_worker_settings_without_keys_mean_the_default_chain(monkeypatch):
    """A pod with an IAM role (IRSA, instance profile) gets no keys in its secret."""
    monkeypatch.setattr(config.os, "environ", {"CALLSCRIBE_S3_ENDPOINT": "s3.amazonaws.com",
                                               "CALLSCRIBE_S3_SECURE": "true", "AWS_CA_BUNDLE": "/ca.pem"})
    s3 = config.s3_from_env()
    assert s3.uses_default_chain and s3.secure and s3.ca_bundle == "/ca.pem"


def test_pg_url_quotes_the_password():
    pg = config.PgSettings("db", 5432, "u", "p@ss/word", "callscribe")
    assert "p%40ss%2Fword" in pg.sqlalchemy_url()
    assert "p@ss" not in repr(pg)


def test_speakers(monkeypatch):
    assert config.speaker_for(0, 1) == "mixed"
    assert [config.speaker_for(c, 2) for c in (0, 1)] == ["agent", "customer"]
    assert config.speaker_for(5, 6) == "channel5"
    monkeypatch.setenv("CALLSCRIBE_CHANNEL_SPEAKERS", "customer, agent")
    assert config.speaker_for(0, 2) == "customer"


def test_discovery_helpers():
    from datetime import date

    assert day_prefix("calls", date(2026, 11, 4)) == "calls/2026/11/04/"
    assert call_id_for("calls/2026/11/04/abc 1.wav") == "abc 1"
    assert listing_row(ObjectInfo("b", "k/x.WAV", "e", 3))[5] == "pending"
    row = listing_row(ObjectInfo("b", "k/notes.txt", "e", 3))
    assert row[5] == "quarantined" and ".txt" in row[6]
    assert groups(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_uris():
    assert parse_uri("s3://bucket/a/b c.wav") == ("bucket", "a/b c.wav")
    with pytest.raises(ValueError):
        parse_uri("http://bucket/a")


def test_the_copy_window_is_a_week_by_default_and_refuses_nonsense(monkeypatch):
    from callscribe.config import copy_window_days

    monkeypatch.delenv("CALLSCRIBE_COPY_WINDOW_DAYS", raising=False)
    assert copy_window_days() == 7
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", " 0 ")
    assert copy_window_days() == 0
    for bad in ("-1", "2.5", "a week", "367"):
        monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", bad)
        with pytest.raises(ValueError, match="CALLSCRIBE_COPY_WINDOW_DAYS"):
            copy_window_days()
