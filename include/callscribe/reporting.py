"""Per-run report and per-day status, read back from Postgres."""

from __future__ import annotations

import logging
from datetime import date, datetime

from sqlalchemy.engine import Engine

from callscribe import db
from callscribe.config import run_area, run_key
from callscribe.discovery import close_run
from callscribe.storage import Store

log = logging.getLogger(__name__)


class ForeignRun(RuntimeError):
    """The run id's leases and figures are another run's: another DAG's, or another deployment's
    (another bucket or prefix on the same database). This run never listed the bucket."""


class SourceChanged(ForeignRun):
    """A task of a run reads another bucket or prefix than the run's own ``discover`` listed: the S3
    connection was changed while the run was in flight (not another deployment's run)."""


def check_source(run_id: str, listed: str | None, source: str) -> None:
    """Raise :class:`SourceChanged` when the run's ``discover`` listed (``listed``, None when it did
    not) another source than this task reads."""
    if listed is not None and listed != source:
        # A bucket is a source's first part (run_source); the prefix comes from the run's Params, whose
        # default a deploy may change under a live run.
        what = ("the S3 connection (its bucket)" if listed.partition("/")[0] != source.partition("/")[0]
                else "the run's prefix (a deploy that changed the prefix Param's default)")
        raise SourceChanged(
            f"run {run_id} listed {listed}, but this task reads {source}: {what} was "
            f"changed while the run was in flight. The run's report closed it as listed; its calls of {listed} "
            f"are not judged here. Trigger a new run of the day for the new source")


def run_source(bucket: str, prefix: str) -> str:
    """What a run lists, as pipeline_runs.source records it."""
    return f"{bucket}/{prefix}"


def _other_deployment(run_id: str, theirs: str, mine: str) -> str:
    return (f"run {run_id} lists {mine}, but a run with this id already listed {theirs} on this database: "
            f"the scheduled runs of two deployments have the same ids, and one callscribe database serves one "
            f"deployment (give each its own database); its calls are left to it. After moving this deployment "
            f"to another bucket or prefix, trigger a new run of the day instead of clearing this one")


def check_owner(engine: Engine, run_id: str, dag_id: str, source: str | None = None) -> None:
    """Raise :class:`ForeignRun` when the other DAG's run listed the bucket under this run id last,
    or (with the ``source`` this run lists) a run of another deployment did.

    Both DAGs' scheduled runs have the same ids, as have two deployments', and leases name the run
    id only: a run refused at ``discover`` must not close, count or judge the calls that run holds.
    """
    with engine.connect() as conn:
        row = conn.execute(db.q("run_owner"), {"run_id": run_id}).one_or_none()
    if row is None:
        return
    if source is not None and row.source is not None and row.source != source:
        raise ForeignRun(_other_deployment(run_id, row.source, source))
    if row.dag_id != dag_id:
        raise ForeignRun(f"run {run_id} of {dag_id} took no calls: {row.dag_id}'s run {run_id} listed the bucket "
                         f"under this id, and its calls are left to it (unpause only one of the two DAGs)")


def report_run(engine: Engine, run_id: str, dag_id: str, day: date, engine_name: str,
               store: Store | None = None, source: str | None = None) -> dict:
    """Count this run's recordings by outcome, store the figures and return them.

    Also ends the run's leases: whatever it left undone is free for the next run, with its
    reason, or `failed` for good once out of attempts (with the ``store``, after the refunds
    its chunk tasks left owed are paid: discovery.close_run). Not for a run id the other DAG's
    run, or another deployment's (``source``: what this run lists), holds (:class:`ForeignRun`).
    """
    check_owner(engine, run_id, dag_id, source)
    # A run refused at discover for sharing a listed run's work area has nothing there: the refunds
    # in that folder are the listed run's (pay_refunds would delete them, paying none).
    released = close_run(engine, run_id, None if area_of_another(engine, run_id) else store)
    if released:
        log.warning("run %s released %d recordings it did not finish", run_id, released)
    with engine.begin() as conn:
        figures = dict(conn.execute(db.q("report_run"), {"run_id": run_id}).one()._mapping)
        conn.execute(db.q("report_upsert"), {"run_id": run_id, "dag_id": dag_id, "call_date": day,
                                             "engine": engine_name, **figures})
    failures = run_failures(engine, run_id)
    figures["audio_h"] = round(figures["audio_s"] / 3600, 4)
    figures["failures"] = failures
    log.info("run %s (%s): %d found, %d done, %d failed, %d quarantined, %d duplicate, %d unfinished, "
             "%.3f h of audio, %d segments", run_id, day, figures["recordings_found"], figures["recordings_done"],
             figures["recordings_failed"], figures["recordings_quarantined"], figures["recordings_duplicate"],
             figures["recordings_unfinished"], figures["audio_h"], figures["segments"])
    for f in failures:
        log.warning("%s %s: %s", f["status"], f["object_key"], f["last_error"])
    return figures


def area_of_another(engine: Engine, run_id: str) -> str | None:
    """The listed run whose work area is this run's, when this one never listed (refused at
    discover by :func:`run_listed`: run ids that differ only in '~', ':' or '+'); else None."""
    with engine.connect() as conn:
        if conn.execute(db.q("run_listed_at"), {"run_id": run_id}).scalar() is not None:
            return None
        return conn.execute(db.q("run_key_taken"), {"run_id": run_id, "run_key": run_key(run_id)}).scalar()


def run_failures(engine: Engine, run_id: str) -> list[dict]:
    """What a run left not done, with the reasons."""
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(db.q("report_failures"), {"run_id": run_id})]


def run_listed(engine: Engine, run_id: str, dag_id: str, day: date, engine_name: str,
               source: str | None = None, store: Store | None = None) -> None:
    """Note that the run is about to list the bucket (its verdict's cut-off for late uploads), and
    what it lists (``source``, :func:`run_source`): a run id that listed another source is another
    deployment's on this database (:class:`ForeignRun`).

    With ``store``, the time is read from the store's clock as well (a small object in the run's
    work area): the objects' times are the store's, and the database's clock may be off from it
    by more than the second the verdict allows. The multipart uploads still under way after
    each day's listing are noted by the listing itself (discovery.note_uploads_under_way)."""
    with engine.begin() as conn:
        row = conn.execute(db.q("run_source"), {"run_id": run_id}).one_or_none()
        if source is not None and row is not None and row.source is not None and row.source != source:
            raise ForeignRun(_other_deployment(run_id, row.source, source))
        conn.execute(db.q("run_key_lock"), {"run_key": run_key(run_id)})
        other = conn.execute(db.q("run_key_taken"), {"run_id": run_id, "run_key": run_key(run_id)}).scalar()
        if other is not None:
            raise ForeignRun(f"run {run_id} would share its work area {run_area(run_id)} with run {other} (run ids "
                             f"that differ only in '~', ':' or '+' are one folder there): trigger the run again "
                             f"with another run id")
        conn.execute(db.q("run_listed"), {"run_id": run_id, "dag_id": dag_id, "call_date": day,
                                          "engine": engine_name, "source": source})
    if store is not None:
        at = store.clock(run_area(run_id) + "listed")
        with engine.begin() as conn:
            conn.execute(db.q("run_listed_store"), {"run_id": run_id, "store_listed_at": at})


def listed_at(engine: Engine, run_id: str) -> datetime | None:
    """When the run last listed the bucket: on the store's clock where it was read, else the database's."""
    with engine.connect() as conn:
        return conn.execute(db.q("run_listed_at"), {"run_id": run_id}).scalar()


def uploads_in_flight(engine: Engine, run_id: str) -> dict[str, list[datetime]] | None:
    """The multipart uploads still under way when the run had listed its days
    (discovery.note_uploads_under_way): key hash -> when each began. None when not known (an
    older run, or a store that would not say)."""
    with engine.connect() as conn:
        rows = conn.execute(db.q("run_uploads_in_flight_get"), {"run_id": run_id}).scalar()
    if rows is None:
        return None
    out: dict[str, list[datetime]] = {}
    for hashed, began in rows:
        out.setdefault(hashed, []).append(datetime.fromisoformat(began))
    return out


def day_status(engine: Engine, day: date) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(db.q("status_day"), {"call_date": day})]
