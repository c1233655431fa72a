"""PgBouncer in transaction pooling mode in front of a test profile's PostgreSQL.

Production teams often reach PostgreSQL through a pooler that hands each *transaction* (not
each session) a server connection: consecutive transactions of one client connection may run
on different server connections, so nothing a session keeps (SET, session advisory locks,
temp tables, prepared statements, LISTEN) survives a commit. :func:`start` runs Debian's
``pgbouncer`` (``apt-get install pgbouncer``; ``make system-deps`` installs it) that way, with
a small pool so that transactions really hop between server connections.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BINARY_HOW = "the pgbouncer binary is missing (apt-get install pgbouncer; `make system-deps` installs it)"


def binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_unprivileged(cmd: list[str]) -> list[str]:
    # PgBouncer refuses to run as root.
    return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else cmd


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@dataclass
class Bouncer:
    port: int
    proc: subprocess.Popen
    root: Path
    admin: tuple[str, str]

    @property
    def log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def conn_json(self, base: str) -> str:
        """An ``AIRFLOW_CONN_*`` JSON value: ``base``'s, pointed at this pooler."""
        return json.dumps({**json.loads(base), "host": "127.0.0.1", "port": self.port})

    def transactions(self, dbname: str) -> int:
        """How many transactions the pooler has passed to ``dbname`` so far (its SHOW STATS)."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, dbname="pgbouncer", user=self.admin[0],
                                password=self.admin[1])
        conn.autocommit = True  # its console takes no transactions
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW STATS")
                names = [d[0] for d in cur.description]
                return sum(int(dict(zip(names, row, strict=True))["total_xact_count"])
                           for row in cur.fetchall() if row[0] == dbname)
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start(pg_port: int, admin: tuple[str, str], pool_size: int = 2,
          pool_sizes: dict[str, int] | None = None) -> Bouncer:
    """PgBouncer on a free loopback port in ``pool_mode = transaction`` in front of every database
    of 127.0.0.1:``pg_port``, with at most ``pool_size`` server connections per database and login.
    Any login of the server gets in with its own password: ``admin`` (a superuser's name and
    password) looks the others up in pg_shadow (auth_query). Server connections are made as
    needed, so it may start before the server does. ``pool_sizes``: another pool size for some databases."""
    exe = binary()
    if exe is None:
        raise RuntimeError(BINARY_HOW)
    root = Path(tempfile.mkdtemp(prefix="callscribe-pgbouncer-"))
    root.chmod(0o755)
    port = _free_port()
    (root / "userlist.txt").write_text(f"{_quote(admin[0])} {_quote(admin[1])}\n")
    databases = [f"{name} = host=127.0.0.1 port={pg_port} pool_size={size}"
                 for name, size in (pool_sizes or {}).items()]
    databases.append(f"* = host=127.0.0.1 port={pg_port}")  # any other database, the pool size below
    newline = "\n"
    (root / "pgbouncer.ini").write_text(f"""\
[databases]
{newline.join(databases)}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {root / "userlist.txt"}
auth_user = {admin[0]}
stats_users = {admin[0]}
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
max_db_connections = 0
server_lifetime = 3600
server_idle_timeout = 600
query_wait_timeout = 120
log_connections = 0
log_disconnections = 0
""")
    for f in root.iterdir():
        f.chmod(0o644)
    with open(root / "pgbouncer.log", "ab") as log:  # its log goes to stderr (it may not write in root)
        proc = subprocess.Popen(_as_unprivileged([exe, str(root / "pgbouncer.ini")]),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    bouncer = Bouncer(port, proc, root, admin)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = bouncer.log
            bouncer.stop()
            raise RuntimeError(f"pgbouncer exited with code {proc.returncode}: {log[-2000:]}")
        with socket.socket() as s:
            s.settimeout(0.3)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return bouncer
        time.sleep(0.1)
    bouncer.stop()
    raise TimeoutError(f"pgbouncer did not listen on 127.0.0.1:{port}")


@contextmanager
def running(pg_port: int, admin: tuple[str, str], **kw) -> Iterator[Bouncer]:
    bouncer = start(pg_port, admin, **kw)
    try:
        yield bouncer
    finally:
        bouncer.stop()
