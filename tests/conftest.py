"""Test session set-up: the project's own embedded services, on the `test` profile.

Airflow reads its settings when first imported, so the environment is set here, at
import time, before any test module imports Airflow. The test profile's data folder is
wiped first: every session starts from empty databases and an empty bucket.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from callscribe.dev import services

REPO = Path(__file__).resolve().parents[1]
# CALLSCRIBE_TEST_PROFILE picks another port set, so a second suite can run beside this one
# (from another clone). The CLI, run in subprocesses, finds it in CALLSCRIBE_PROFILE.
PROFILE = services.profile(os.environ.get("CALLSCRIBE_TEST_PROFILE", "test"), root=REPO / ".callscribe")

services.wipe(PROFILE)
services.apply_environment(PROFILE, repo_root=REPO)
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
