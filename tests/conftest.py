"""Test session set-up: the project's own embedded services, on the `test` profile.

Airflow reads its settings when first imported, so the environment is set here, at
import time, before any test module imports Airflow. The test profile's data folder is
wiped first: every session starts from empty databases and an empty bucket.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from callscribe.dev import services

REPO = Path(__file__).resolve().parents[1]
# CALLSCRIBE_TEST_PROFILE picks another port set, so a second suite can run beside this one
# (from another clone). The CLI, run in subprocesses, finds it in CALLSCRIBE_PROFILE.
PROFILE = services.profile(os.environ.get("CALLSCRIBE_TEST_PROFILE", "test"), root=REPO / ".callscribe")

# Under pytest-xdist (`make test` runs the unit tests beside the integration tests) the controller
# wipes, once, before its workers start; a worker wiping would stop the other's services.
if "PYTEST_XDIST_WORKER" not in os.environ:
    services.wipe(PROFILE)
_ENV = services.apply_environment(PROFILE, repo_root=REPO)
_BOUNCER = None
if os.environ.get("CALLSCRIBE_TEST_PGBOUNCER", "").strip() not in ("", "0"):
    # The whole session's callscribe connections (the pipeline's and the analysts') through
    # PgBouncer in transaction pooling mode (tests/pgbouncer.py), e.g. CALLSCRIBE_TEST_PGBOUNCER=4: the
    # server connections per login (at least 2; 4 otherwise). Tests that hold transactions open and
    # watch pg_locks from one more need 3 or 4 (test_faults, test_partition_races). The Airflow
    # metadata database, and tests that connect to the server's own port, go straight to it.
    import atexit

    from tests import pgbouncer

    _secrets = json.loads((PROFILE.root / "secrets.json").read_text())
    _size = os.environ["CALLSCRIBE_TEST_PGBOUNCER"].strip()
    _BOUNCER = pgbouncer.start(PROFILE.pg_port, ("callscribe", _secrets["pg_password"]),
                               pool_size=max(2, int(_size)) if _size.isdigit() else 4)
    atexit.register(_BOUNCER.stop)


def _through_pgbouncer() -> None:
    if _BOUNCER is not None:
        for name in ("AIRFLOW_CONN_CALLSCRIBE_POSTGRES", "AIRFLOW_CONN_CALLSCRIBE_ANALYST"):
            os.environ[name] = _BOUNCER.conn_json(_ENV[name])


_through_pgbouncer()
# Tests share one database and use neighbouring days: a run that also took the days before
# its own would take other tests' recordings. The tests of late uploads set it per run.
os.environ["CALLSCRIBE_LOOKBACK_DAYS"] = "0"
# For the same reason, copies are matched on the same day only: tests upload the same sample
# bytes on neighbouring days as calls of their own. The tests of copies across days set it.
os.environ["CALLSCRIBE_COPY_WINDOW_DAYS"] = "0"


@pytest.fixture(scope="session")
def stack() -> services.Profile:
    """Embedded Postgres, object store and Airflow metadata database, started once."""
    services.up(PROFILE)
    _through_pgbouncer()  # up() set the profile's environment again
    yield PROFILE
    # Close Airflow's pooled connections before the database goes away.
    if "airflow.settings" in sys.modules:
        sys.modules["airflow.settings"].dispose_orm()
    services.down(PROFILE)


@pytest.fixture(scope="session")
def pg(stack):
    from callscribe.db import engine_from_env

    return engine_from_env()


@pytest.fixture(scope="session")
def s3(stack):
    from callscribe.storage import store

    return store()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (``make test``: ``-n 2``) every integration test goes to one worker, in
    order, since they share one set of services and days; the other worker takes the unit tests,
    a module at a time. (xdist's own ``--dist loadgroup`` needs a node id pytest 9 no longer lets
    it rewrite.)"""
    from xdist.scheduler import LoadScopeScheduling

    class IntegrationOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "tests/integration" if nodeid.startswith("tests/integration/") else nodeid.split("::")[0]

    return IntegrationOnOneWorker(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # An xdist worker hands its fault ledger to the controller, which prints the summary.
    if hasattr(session.config, "workeroutput"):
        from tests import chaos

        session.config.workeroutput["chaos_ledger"] = json.dumps(chaos.LEDGER, default=str)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    from tests import chaos

    chaos.LEDGER.extend(json.loads(getattr(node, "workeroutput", {}).get("chaos_ledger", "[]")))


def pytest_terminal_summary(terminalreporter) -> None:
    """The fault scenarios' summary: inputs tried, faults injected, recordings lost, duplicates."""
    from tests import chaos

    lines = chaos.summary()
    if not lines:
        return
    terminalreporter.section("reliability: recordings lost and duplicated after each fault")
    for line in lines:
        terminalreporter.write_line(line)
    chaos.write(REPO / ".callscribe" / "chaos-summary.json")
