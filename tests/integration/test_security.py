"""Secrets stay out of XCom, task logs and worker arguments; the embedded services bind to loopback."""

from __future__ import annotations

import json
import logging
import os

import psutil
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration


def _secrets(stack) -> list[str]:
    values = json.loads((stack.root / "secrets.json").read_text())
    return [v for v in values.values() if len(v) >= 8]


def test_embedded_services_listen_on_loopback_only(stack):
    ports = {stack.pg_port, *range(stack.s3_base_port, stack.s3_base_port + 5)}
    seen = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports | {p + 10000 for p in ports}:
            seen.append(conn.laddr)
    assert seen, "no listening sockets found for the embedded services"
    assert all(addr.ip in ("127.0.0.1", "::1") for addr in seen), seen


def test_no_secret_in_xcom_or_task_logs(stack, s3, capfd, caplog):
    from datetime import date

    from callscribe.cli import run_day
    from callscribe.discovery import day_prefix
    from callscribe.samples import sample_dir

    day = date(2026, 11, 20)
    s3.put_bytes(s3.uri(day_prefix("calls/", day) + "call-0003.wav"), (sample_dir() / "call-0003.wav").read_bytes())
    capfd.readouterr()
    caplog.set_level(logging.INFO)
    dr = run_day(day)  # every task runs, the worker included; dag.test logs to the terminal
    # Task logs reach the terminal or, once pytest's logging capture holds them, caplog.
    output = "".join(capfd.readouterr()) + caplog.text
    assert str(dr.state).endswith("success")
    assert "worker:" in output and "segments written" in output  # the worker's log is in there
    secrets = _secrets(stack)
    meta = sa.create_engine(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    with meta.connect() as c:
        values = [str(v) for (v,) in c.execute(sa.text("SELECT value FROM xcom"))]
    meta.dispose()
    assert values, "expected XCom rows from the DAG runs"
    for secret in secrets:
        assert not any(secret in v for v in values)
        assert secret not in output


def test_worker_command_carries_no_credentials():
    from callscribe.pipeline import worker_command

    cmd = worker_command("s3://calls/_callscribe/runs/r/jobs/job-00000.json")
    assert cmd == ["python", "-m", "callscribe.worker", "--job", "s3://calls/_callscribe/runs/r/jobs/job-00000.json"]


def test_failed_logins_do_not_echo_credentials(stack):
    """The errors an operator sees when a password or key is wrong never contain it."""
    from callscribe.config import PgSettings, S3Settings
    from callscribe.db import engine_for
    from callscribe.storage import Store

    wrong_password = "Wr0ng-pg-p4ssw0rd-7d1e"
    engine = engine_for(PgSettings("127.0.0.1", stack.pg_port, "callscribe", wrong_password).sqlalchemy_url())
    with pytest.raises(sa.exc.OperationalError) as pg_err:
        with engine.connect():
            pass
    engine.dispose()
    assert "password authentication failed" in str(pg_err.value)
    assert wrong_password not in str(pg_err.value) and wrong_password not in repr(pg_err.value)
    assert wrong_password not in repr(engine.url)

    wrong_secret = "Wr0ng-s3-s3cr3t-k3y-91fa"
    settings = S3Settings(stack.s3_endpoint, "callscribe-wrong-key", wrong_secret)
    assert wrong_secret not in repr(settings)
    from minio.error import S3Error

    with pytest.raises(S3Error) as s3_err:
        list(Store(settings).list("calls/"))
    assert wrong_secret not in str(s3_err.value) and wrong_secret not in repr(s3_err.value)
