"""A callscribe database that a test can back up and restore (point-in-time recovery, simulated
with the real server's own pg_dump and pg_restore), while the bucket and Airflow keep their state.

A database of its own (not the session's): a restore brings back every table and the sequences
as they were at the backup, which on the session's database would take back other tests' rows.
A bucket of its own too (``bucket_of_its_own``): the runbook's `sweep --after-restore` deletes
every work file the test's database holds no lease on, which in the session's bucket are every
other test's (session fixtures' included), and the test's erasure notes would be re-applied by
later runs of the session's database.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy.engine import Engine

from callscribe import db, partitions
from callscribe.dev import services

NAME = "callscribe_restore"


@dataclass
class Restorable:
    """The test's database: ``backup()`` a dump now, ``restore(dump)`` the database back to it."""

    engine: Engine
    port: int
    password: str
    folder: Path

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password}

    def _tool(self, name: str, *args: str) -> None:
        subprocess.run([services._pg_bin(name), "-h", "127.0.0.1", "-p", str(self.port), "-U", "callscribe",
                        *args], env=self._env(), check=True, capture_output=True, timeout=120)

    def backup(self, label: str = "backup") -> Path:
        path = self.folder / f"{label}.dump"
        self._tool("pg_dump", "-Fc", "-f", str(path), NAME)
        return path

    def restore(self, dump: Path) -> None:
        """The database replaced by the dump (a new cluster restored to the backup's point): every
        connection is cut, as a restore does; the bucket is left as it is."""
        self.engine.dispose()
        _admin(self.port, self.password, f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)", f"CREATE DATABASE {NAME}")
        self._tool("pg_restore", "--exit-on-error", "-d", NAME, str(dump))
        # A worker process's memory of months it saw made (the restore may have taken them back).
        partitions._known.clear()


def _admin(port: int, password: str, *statements: str) -> None:
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="callscribe", password=password, dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
    finally:
        conn.close()


@contextmanager
def bucket_of_its_own(s3, name: str) -> Iterator:
    """A store on bucket ``name``, which the pipeline (dag.test() tasks, the CLI in a subprocess) uses
    for the block as its configured bucket."""
    from dataclasses import replace

    from callscribe.storage import Store

    own = Store(replace(s3.settings, bucket=name))
    if not own.client.bucket_exists(name):
        own.client.make_bucket(name)
    conn = json.loads(os.environ["AIRFLOW_CONN_CALLSCRIBE_S3"])
    with pytest.MonkeyPatch.context() as mp:
        # The bucket is the connection's (an Airflow task, the CLI); the worker's environment is
        # written from the settings the task read.
        extra = {**conn.get("extra", {}), "bucket": name}
        mp.setenv("AIRFLOW_CONN_CALLSCRIBE_S3", json.dumps({**conn, "extra": extra}))
        yield own


@contextmanager
def restorable_database(stack, tmp_path: Path) -> Iterator[Restorable]:
    """A migrated database of its own that the pipeline (dag.test() tasks, the CLI's functions) uses
    for the block, through the same ``callscribe_postgres`` connection, pointed at it."""
    sec = json.loads((stack.root / "secrets.json").read_text())
    port = stack.pg_port
    _admin(port, sec["pg_password"], f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)", f"CREATE DATABASE {NAME}")
    conn = json.loads(os.environ["AIRFLOW_CONN_CALLSCRIBE_POSTGRES"])
    known = set(partitions._known)  # months made in the session's database, not in this one
    partitions._known.clear()
    with pytest.MonkeyPatch.context() as mp:
        # Straight to the server (not a pooler the session may use): a restore cuts every connection.
        mp.setenv("AIRFLOW_CONN_CALLSCRIBE_POSTGRES",
                  json.dumps({**conn, "host": "127.0.0.1", "port": port, "schema": NAME}))
        engine = db.engine_from_env()
        db.migrate(engine)
        try:
            yield Restorable(engine, port, sec["pg_password"], tmp_path)
        finally:
            engine.dispose()
            partitions._known.clear()
            partitions._known.update(known)
    _admin(port, sec["pg_password"], f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
