"""A run triggered without a logical date (Airflow 3 allows it) covers a day and finishes.

Such a run has no logical date and no data interval, only ``run_after``: it covers the
last whole day (UTC) before that moment, as a scheduled run started then would.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from callscribe.samples import sample_files
from tests.integration.helpers import run_covered, upload_day

pytestmark = pytest.mark.integration
DAY = date(2031, 3, 1)  # no other test uses it


def test_a_manual_run_without_a_logical_date_covers_the_day_before_it(stack, s3, pg):
    from callscribe.local_run import get_dag

    upload_day(s3, DAY, files=sample_files()[:1])
    dag = get_dag()
    dag.deadline = None  # dag.test() in Airflow 3.3 cannot finish a run of a DAG with one (see local_run)
    dr = dag.test(run_after=datetime(2031, 3, 2, 9, 30, tzinfo=UTC), logical_date=None)
    assert dr.logical_date is None
    assert str(dr.state).rsplit(".", 1)[-1].lower() == "success"
    assert run_covered(pg, dr) == (DAY, ["done"])
