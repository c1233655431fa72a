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
BASE_PROFILE = os.environ.get("CALLSCRIBE_TEST_PROFILE", "test")
# Under pytest-xdist (`make test`: -n 2) each worker has services of its own, so integration
# modules run on both at once: the second worker takes the profile paired with the first's.
# A profile without a pair keeps every integration test on one worker (the scheduler below).
PAIRED = {"test": "test2"}
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def _worker_group(worker_id: str) -> int:
    """0 or 1: which of the pair a worker (gw0, gw1, a restarted gw2, ...) uses."""
    return int(worker_id.removeprefix("gw") or 0) % 2


PROFILE = services.profile(PAIRED[BASE_PROFILE] if _WORKER and _worker_group(_WORKER) and BASE_PROFILE in PAIRED
                           else BASE_PROFILE, root=REPO / ".callscribe")

# The controller wipes, once, before its workers start; a worker wiping would stop the other's services.
if not _WORKER:
    for _name in (BASE_PROFILE, PAIRED.get(BASE_PROFILE)):
        if _name:
            services.wipe(services.profile(_name, root=REPO / ".callscribe"))
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
    """Under pytest-xdist (``make test``: ``-n 2``) a module at a time, since its tests share
    module fixtures and days. Where the profile has a pair (above), each worker has services of its
    own and takes a fixed half of the integration modules, in file order (the same run to run: the
    order a test may have been written against), then unit modules while any are left. Otherwise
    every integration test goes to one worker, in order, since they would share one set of services.
    (xdist's own ``--dist loadgroup`` needs a node id pytest 9 no longer lets it rewrite.)"""
    from xdist.scheduler import LoadScopeScheduling

    paired = BASE_PROFILE in PAIRED and config.getoption("numprocesses") in (2, "2")

    def integration(scope: str) -> bool:
        return scope.startswith("tests/integration/")

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return "tests/integration" if not paired and integration(module) else module

        def _next_scope(self, node) -> str | None:
            """This worker's next integration module in file order, else the next unit module."""
            if not hasattr(self, "_order"):  # module -> its place in the collection, made once
                self._order = {s: i for i, s in enumerate(dict.fromkeys(self._split_scope(n) for n in self.collection))}
                wired = [s for s in self._order if integration(s)]
                self._half = {s: i % 2 for i, s in enumerate(wired)}  # alternating: a fixed half each
            group = _worker_group(node.gateway.id)
            mine = [s for s in self.workqueue if self._half.get(s) == group]
            left = mine or [s for s in self.workqueue if not integration(s)]
            return min(left, key=self._order.__getitem__, default=None)

        def _assign_work_unit(self, node) -> None:
            if paired:
                scope = self._next_scope(node)
                if scope is None:  # what is left is the other worker's
                    if not self._pending_of(self.assigned_work.get(node, {})):
                        node.shutdown()
                    return
                self.workqueue.move_to_end(scope, last=False)  # xdist's own assignment takes the first
            super()._assign_work_unit(node)

    return ByModule(config, log)


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
