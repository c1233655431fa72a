"""The `callscribe` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import sys
from datetime import date, datetime
from pathlib import Path

from callscribe.local_run import run_day  # still callscribe.cli.run_day for the tests and benchmarks

log = logging.getLogger("callscribe")


DEV_INSTALL = "pip install -e '.[dev]'"


def _embedded():
    """The embedded services module, or None in a production install (the images delete
    callscribe.dev): there every command works from connections and the environment only."""
    try:
        from callscribe.dev import services
    except ModuleNotFoundError as exc:
        if exc.name not in ("callscribe.dev", "callscribe.dev.services"):
            raise  # a dependency of the dev package is missing: say so, do not hide it
        return None
    return services


@contextlib.contextmanager
def _dev_command(command: str):
    """Around a dev command's imports: one clear line instead of a traceback without callscribe.dev."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name == "callscribe.dev" or (exc.name or "").startswith("callscribe.dev."):
            sys.exit(f"callscribe {command} needs the development install: {DEV_INSTALL}")
        raise


def _use_services(args) -> None:
    """Point at configured services, or at the embedded ones when nothing is configured."""
    conn_id = os.environ.get("CALLSCRIBE_PG_CONN_ID", "callscribe_postgres")  # as config reads it
    if os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") or os.environ.get("CALLSCRIBE_PG_HOST"):
        return
    services = _embedded()
    if services is None:
        return  # production: connections from the environment or Airflow's secrets backend
    p = services.profile(args.profile)
    if not (p.root / "secrets.json").exists():
        sys.exit(f"no services configured and no embedded services in {p.root}: run `callscribe services up`")
    services.apply_environment(p)


def _day(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s!r}") from None


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def _json_default(v):
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    raise TypeError(type(v).__name__)


# ---------------------------------------------------------------- commands


def cmd_services(args) -> int:
    with _dev_command("services"):
        from callscribe.dev import services
    p = services.profile(args.profile)
    if args.action == "up":
        services.up(p, airflow=not args.no_airflow)
        for k, v in services.status(p).items():
            print(f"{k:13} {v}")
    elif args.action == "down":
        services.down(p)
        print("stopped")
    elif args.action == "env":
        for k, v in services.environment(p).items():
            print(f"export {k}={shlex.quote(v)}")
    else:
        for k, v in services.status(p).items():
            print(f"{k:13} {v}")
    return 0


def cmd_transcribe(args) -> int:
    from callscribe import engines
    from callscribe.audio import DecodeError, decode
    from callscribe.transcription import as_channels, transcribe_decoded

    engine = engines.create(args.engine)
    rc = 0
    for f in args.files:
        path = Path(f)
        try:
            decoded = decode(path.read_bytes(), str(path))
        except (OSError, DecodeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            rc = 1
            continue
        segs = transcribe_decoded(decoded, engine)
        channels = as_channels(segs, decoded.n_channels)
        if args.json:
            print(json.dumps({"file": str(path), "duration_s": round(decoded.duration_s, 3),
                              "engine": engine.name, "channels": channels}))
        else:
            print(f"== {path} ({decoded.duration_s:.1f} s, {decoded.n_channels} ch)")
            for s in sorted((s for c in channels for s in [dict(x, speaker=c["speaker"]) for x in c["segments"]]),
                            key=lambda s: s["start"]):
                print(f"[{s['start']:7.2f}-{s['end']:7.2f}] {s['speaker']:>8}: {s['text']}")
    return rc


def cmd_upload(args) -> int:
    from callscribe.discovery import day_prefix
    from callscribe.storage import store

    _use_services(args)
    st = store()
    prefix = day_prefix(args.prefix, args.date)
    for f in args.files:
        path = Path(f)
        uri = st.uri(prefix + path.name)
        meta = {"agent-id": args.agent_id} if args.agent_id else None
        st.put_bytes(uri, path.read_bytes(), metadata=meta)
        print(uri)
    return 0


def cmd_run(args) -> int:
    _use_services(args)
    services = _embedded()
    if services is not None and os.environ.get("CALLSCRIBE_PROFILE"):
        services.airflow_db_ready(services.profile(args.profile))
    conf = {"reprocess": args.reprocess, "engine": args.engine}
    if args.max_recordings:
        conf["max_recordings"] = args.max_recordings
    if args.lookback_days is not None:
        conf["lookback_days"] = args.lookback_days
    try:
        dr = run_day(args.date, conf, args.logical_date)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = str(getattr(dr, "state", "unknown")).rsplit(".", 1)[-1].lower()
    print(f"run {dr.run_id}: {state}")
    if state != "success":
        _print_run_problems(dr)
    return 0 if state == "success" else 1


def _print_run_problems(dr) -> None:
    """Why a run is red: its failed tasks, and what it left not done (from the report)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    from callscribe.db import checked_engine
    from callscribe.reporting import run_failures

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dr.dag_id, run_id=dr.run_id).all()
        failed = sorted({ti.task_id for ti in tis if str(ti.state).rsplit(".", 1)[-1] in ("failed", "upstream_failed")})
    if failed:
        print(f"failed tasks: {', '.join(failed)}")
    for f in run_failures(checked_engine(), dr.run_id):
        print(f"  {f['status']:<11} {f['object_key']}: {f['last_error'] or ''}")


def cmd_status(args) -> int:
    from callscribe.db import checked_engine
    from callscribe.reporting import day_status

    _use_services(args)
    rows = day_status(checked_engine(), args.date)
    if args.json:
        for r in rows:
            print(json.dumps({"key": r["object_key"], "status": r["status"], "error": r["last_error"],
                              "warning": r["warning"], "attempts": r["attempts"], "duration_s": r["duration_s"],
                              "segments": r["segments"]}, default=_json_default))
    else:
        for r in rows:
            r["key"] = r["object_key"]
            r["reason"] = r["last_error"] or (f"warning: {r['warning']}" if r["warning"] else None)
        _print_table(rows, ["key", "status", "reason", "attempts", "duration_s", "segments"])
    return 0


def cmd_audit(args) -> int:
    from callscribe.audit import audit_day
    from callscribe.db import checked_engine
    from callscribe.storage import store

    _use_services(args)
    result = audit_day(store(), checked_engine(), args.date, args.prefix)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        states = ", ".join(f"{n} {s}" for s, n in sorted(result.states.items())) or "none"
        print(f"{result.day}: {result.objects} objects; recordings: {states}")
        for label, items in (("lost", result.lost), ("duplicated", result.duplicated),
                             ("unfinished", result.unfinished)):
            print(f"{label}: {len(items)}")
            for item in items:
                print(f"  {item}")
    return 0 if result.clean else 1


def cmd_export(args) -> int:
    from callscribe.db import checked_engine
    from callscribe.exporting import calls_between, export

    _use_services(args)
    last = args.to_date or args.date
    if last < args.date:
        print(f"--to {last} is before --date {args.date}", file=sys.stderr)
        return 2
    written = export(calls_between(checked_engine(), args.date, last), args.format, Path(args.out))
    print(f"{len(written)} file(s) in {args.out}" if args.format != "jsonl" else f"wrote {written[0]}")
    return 0


def cmd_dataset(args) -> int:
    from callscribe.dataset import build, summary_lines
    from callscribe.db import checked_engine
    from callscribe.storage import store

    _use_services(args)
    last = args.to_date or args.from_date
    if last < args.from_date:
        print(f"--to {last} is before --from {args.from_date}", file=sys.stderr)
        return 2
    if args.max_chunk_s <= 0 or (args.min_confidence is not None and not 0 <= args.min_confidence <= 1):
        print("--max-chunk-s must be positive and --min-confidence within [0, 1]", file=sys.stderr)
        return 2
    import getpass

    from callscribe.access import log_access

    engine = checked_engine()
    # A copy of raw transcripts and audio leaves a trace, written before anything is copied.
    log_access(engine, getpass.getuser(), "dataset",
               f"calls of {args.from_date}..{last} into {Path(args.out).resolve()}, min confidence "
               f"{args.min_confidence}")
    try:
        summary = build(engine, store(), args.from_date, last, Path(args.out), args.min_confidence,
                        args.max_chunk_s, args.threads)
    except FileExistsError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("\n".join(summary_lines(summary, args.min_confidence, args.max_chunk_s)))
    print(f"written to {args.out} (Hugging Face audiofolder, NeMo manifests, summary.json)")
    return 0


def cmd_erase(args) -> int:
    import getpass

    from callscribe.db import checked_engine
    from callscribe.erasure import CleanupUnfinished, ErasureBusy, NoteUnwritten, NothingToErase, erase, reapply
    from callscribe.storage import store

    _use_services(args)
    if args.reapply:
        if args.delete_audio or args.force:
            # Neither has a meaning here: a re-applied erasure does what the note's erasure did.
            print("--reapply takes neither --delete-audio nor --force", file=sys.stderr)
            return 2
        # The runbook's step after a database restore: every erasure the bucket's notes name that
        # the database no longer remembers, erased again; without --bucket, those of every bucket an
        # erasure named (`erase --bucket`), as the operator following the runbook cannot know them.
        done = reapply(store(), checked_engine(), bucket=args.bucket, actor=args.actor or getpass.getuser(),
                       every_bucket=args.bucket is None, dry_run=args.dry_run)
        print(f"{len(done)} erasures would be re-applied from their notes (the database has lost them); "
              f"nothing changed" if args.dry_run
              else f"{len(done)} erasures re-applied from their notes (the database had lost them)")
        return 0
    try:
        done = erase(store(), checked_engine(), args.key, args.actor or getpass.getuser(), bucket=args.bucket,
                     delete_audio=args.delete_audio, dry_run=args.dry_run, force=args.force)
    except (NothingToErase, ErasureBusy, NoteUnwritten, CleanupUnfinished) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(done.summary())
    return 0


def cmd_migrate(args) -> int:
    from callscribe import db

    _use_services(args)
    engine = db.engine_from_env()
    before = db.schema_revision(engine)
    db.migrate(engine)
    after = db.schema_revision(engine)
    print(f"callscribe schema: {before or 'none'} -> {after}" if after != before
          else f"callscribe schema at {after}: nothing to do")
    return 0


def cmd_sweep(args) -> int:
    from datetime import timedelta

    from callscribe.config import DEFAULT_RETENTION_DAYS, MIN_RETENTION_DAYS
    from callscribe.db import checked_engine
    from callscribe.retention import sweep
    from callscribe.storage import store

    _use_services(args)
    days = DEFAULT_RETENTION_DAYS if args.days is None else args.days
    if args.after_restore:
        # The runbook's step after a database restore (every DAG paused, no run live): the work
        # area's files name recording ids the restore hands out again, and hold text of calls an
        # erasure made since cannot find by id. Everything no lease holds goes, whatever its age.
        if args.days is not None:
            print("--after-restore sweeps whatever its age: leave out --days", file=sys.stderr)
            return 2
        days = 0.0
    elif days < MIN_RETENTION_DAYS:
        print(f"--days must be at least {MIN_RETENTION_DAYS} (the DAG's run timeout)", file=sys.stderr)
        return 2
    result = sweep(store(), checked_engine(), timedelta(days=days), dry_run=args.dry_run)
    print(json.dumps(result.as_dict()))
    return 0


def cmd_search(args) -> int:
    from callscribe.db import checked_engine
    from callscribe.search import SearchFilters, highlight, note_for, search

    _use_services(args)
    filters = SearchFilters(from_date=args.from_date, to_date=args.to_date, speaker=args.speaker, agent=args.agent,
                            min_duration_s=args.min_duration, fuzzy=args.fuzzy,
                            recent_days=None if args.all_dates else args.recent_days)
    hits = search(checked_engine(), args.query, limit=args.limit, filters=filters)
    note = note_for(hits, args.fuzzy)
    if note and not args.json:
        print(note)
    for h in hits:
        out = {"key": h["object_key"], "call_date": h["call_date"], "agent_id": h["agent_id"],
               "channel": h["channel"], "speaker": h["speaker"], "start": round(h["start_s"], 2),
               "end": round(h["end_s"], 2), "hit": round(h["hit_s"], 2), "snippet": highlight(h["snippet"]),
               "match": h["match"]}
        if args.json:
            print(json.dumps(out, default=_json_default))
        else:
            print(f"{out['key']}  {out['speaker']:>8} {out['hit']:7.2f} ({out['start']:.2f}-{out['end']:.2f})  "
                  f"{out['snippet']}")
    if note and args.json:
        print(note, file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    with _dev_command("demo"):
        from callscribe.dev import services
        from callscribe.dev.demo import run_demo

    # Task logs stay in the Airflow log folder; the demo prints its own summary.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    return run_demo(services.profile(args.profile), args.date)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def cmd_ui(args) -> int:
    import signal
    import time

    with _dev_command("ui"):
        from callscribe.dev import services
    p = services.profile(args.profile)
    services.up(p)
    procs = services.airflow_up(p)
    # Stop the components on `kill` as on Ctrl+C.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"Airflow UI: http://127.0.0.1:{p.api_port}  (loopback only, no login)")
    print(f"component logs: {p.airflow_home / 'component-logs'}; Ctrl+C stops Airflow (not the services)")
    try:
        while all(proc.poll() is None for proc in procs):
            time.sleep(1)
        print("an Airflow component exited; see its log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        services.airflow_down(procs)


def cmd_pod_spec(args) -> int:
    import yaml

    from callscribe.kubernetes import render_pod

    # Airflow logs to stdout; keep stdout for the manifest alone.
    with contextlib.redirect_stdout(sys.stderr):
        pod = render_pod(args.job)
    print(yaml.safe_dump(pod, sort_keys=False), end="")
    return 0


def cmd_bench(args) -> int:
    from callscribe.samples import sample_dir

    with _dev_command("bench"):
        from callscribe.dev.bench import as_json, as_table, run_bench

    if args.random_weights or args.batch:
        return _bench_throughput(args)
    result = run_bench(args.engine, Path(args.dir) if args.dir else sample_dir(), repeat=args.repeat,
                       batch_audio_s=args.batch_audio_s)
    print(as_json(result) if args.json else as_table(result))
    return 0


def cmd_parity(args) -> int:
    from callscribe.engines.granite import GraniteNarEngine
    from callscribe.engines.granite_native import GraniteNarNativeEngine
    from callscribe.samples import sample_dir

    with _dev_command("parity"):
        from callscribe.dev.parity import run_parity

    path = Path(args.model)
    reference = GraniteNarEngine(path=path, device=args.device)
    native = GraniteNarNativeEngine(path=path, device=args.device)
    report = run_parity(reference, native, Path(args.dir) if args.dir else sample_dir(), batch=args.batch)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        def pct(x):
            return "n/a" if x is None else f"{100 * x:.2f} %"

        print(f"chunks                     {report.chunks}")
        print(f"identical token ids        {pct(report.exact_match)}")
        print(f"token agreement            {pct(report.token_agreement)}")
        print(f"WER native vs reference    {pct(report.wer_between)}")
        print(f"WER vs labels (ref / nat)  {pct(report.wer_reference)} / {pct(report.wer_native)}")
        print(f"largest logit difference   {report.max_logit_diff if report.max_logit_diff is not None else 'n/a'}"
              f" ({report.logits_compared} chunks compared)")
        for w in report.worst:
            print(f"  chunk {w['chunk']}: {w['token_edits']} edits\n    ref: {w['reference']}\n    nat: {w['native']}")
        if getattr(report, "note", None):
            print(f"note: {report.note}")
    return 0


def _bench_throughput(args) -> int:
    """Fixed batches of equal chunks: the published RTFx method (no WER)."""
    from dataclasses import asdict

    from callscribe import engines

    with _dev_command("bench"):
        from callscribe.dev.bench import run_throughput, throughput_table

    options = {}
    if args.random_weights:
        if args.engine != "granite-nar-native":
            sys.exit("--random-weights needs --engine granite-nar-native")
        options = {"random_weights": True, "size": args.config}
    engine = engines.create(args.engine, **options)
    result = run_throughput(engine, batch=args.batch or 128, chunk_s=args.chunk_s, batches=args.batches,
                            warmup=args.warmup)
    print(json.dumps(asdict(result)) if args.json else throughput_table(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from callscribe.engines import DEFAULT_ENGINE, available

    services = _embedded()
    ap = argparse.ArgumentParser(prog="callscribe", description="Bulk call transcription: pipeline and tools.")
    ap.add_argument("--profile", default=os.environ.get("CALLSCRIBE_PROFILE", "dev"),
                    choices=sorted(services.PROFILES) if services else None,
                    help="which embedded services to use (development install)")
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("services", help="start, stop or show the embedded services")
    s.add_argument("action", choices=["up", "down", "status", "env"])
    s.add_argument("--no-airflow", action="store_true", help="skip the Airflow metadata database")
    s.set_defaults(func=cmd_services)

    s = sub.add_parser("transcribe", help="transcribe local files with the pipeline's own path")
    s.add_argument("files", nargs="+")
    s.add_argument("--engine", default=DEFAULT_ENGINE, choices=available())
    s.add_argument("--json", action="store_true", help="one JSON object per file per line")
    s.set_defaults(func=cmd_transcribe)

    s = sub.add_parser("upload", help="put files under a day's prefix in the bucket")
    s.add_argument("files", nargs="+")
    s.add_argument("--date", type=_day, required=True)
    s.add_argument("--prefix", default="calls/")
    s.add_argument("--agent-id", help="stored as the objects' agent-id metadata")
    s.set_defaults(func=cmd_upload)

    s = sub.add_parser("run", help="run the DAG for one day (dag.test) against the configured services")
    s.add_argument("--date", type=_day, required=True)
    s.add_argument("--engine", default=DEFAULT_ENGINE, choices=available())
    s.add_argument("--reprocess", action="store_true")
    s.add_argument("--max-recordings", type=int)
    s.add_argument("--lookback-days", type=int,
                   help="also take late uploads from this many days before (default: the DAG's)")
    s.add_argument("--logical-date", type=datetime.fromisoformat,
                   help="the run's logical date (default: the day's midnight in CALLSCRIBE_TIMEZONE; UTC when "
                        "given without an offset); another one runs the day again beside an existing run, as a "
                        "manual trigger with the date Param does")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="one row per recording of a day")
    s.add_argument("--date", type=_day, required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("audit", help="reconcile a day's bucket listing with Postgres (exit 1 if anything is off)")
    s.add_argument("--date", type=_day, required=True)
    s.add_argument("--prefix", default="calls/")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("export", help="transcripts of a day or a range as JSON lines, SRT, WebVTT or text "
                                      "(redacted, as analysts see them)")
    s.add_argument("--date", type=_day, required=True, help="first call date")
    s.add_argument("--to", dest="to_date", type=_day, help="last call date (default: --date)")
    s.add_argument("--format", choices=("jsonl", "srt", "vtt", "txt"), default="jsonl")
    s.add_argument("--out", required=True, help="folder to write to (one file per call; one .jsonl for jsonl)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("dataset", help="a fine-tuning data set from the transcribed calls: 16 kHz FLAC examples, "
                                       "Hugging Face audiofolder and NeMo manifests, split by recording")
    s.add_argument("--from", dest="from_date", type=_day, required=True, help="first call date")
    s.add_argument("--to", dest="to_date", type=_day, help="last call date (default: --from)")
    s.add_argument("--out", required=True, help="a new or empty folder")
    s.add_argument("--min-confidence", type=float,
                   help="leave out segments the engine was less sure of (and those with no confidence)")
    s.add_argument("--max-chunk-s", type=float, default=30.0,
                   help="longest example in seconds: neighbouring segments are merged up to it, longer ones left out")
    s.add_argument("--threads", type=int, default=4, help="recordings cut at once")
    s.set_defaults(func=cmd_dataset)

    s = sub.add_parser("erase", help="erase one recording's transcript, word times, packs and access log "
                                     "entries on request (a data subject's erasure)")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--key", help="the recording's object key in the bucket")
    what.add_argument("--reapply", action="store_true",
                      help="after a database restore: erase again every erasure the bucket's notes "
                           "(_callscribe_erasures/) name that the database no longer remembers (those of "
                           "every bucket an erasure named, unless --bucket; --dry-run counts them)")
    s.add_argument("--bucket", help="default: the configured bucket")
    s.add_argument("--delete-audio", action="store_true", help="delete the recording from the bucket too")
    s.add_argument("--dry-run", action="store_true", help="say what would be erased, change nothing")
    s.add_argument("--actor", help="who asks (written to the access log; default: the OS user)")
    s.add_argument("--force", action="store_true", help="erase even though a run's lease is live (only once the "
                                                        "Airflow UI shows that run is over)")
    s.set_defaults(func=cmd_erase)

    s = sub.add_parser("migrate", help="bring the database's schema to this version's migrations (after each "
                                       "upgrade; as a user allowed to create roles and extensions)")
    s.set_defaults(func=cmd_migrate)

    s = sub.add_parser("sweep", help="delete the pipeline's intermediates (_callscribe/) older than --days "
                                     "that no live run holds")
    s.add_argument("--days", type=float, default=None, help="retention in days (default: "
                                                            "CALLSCRIBE_WORK_RETENTION_DAYS or 14)")
    s.add_argument("--dry-run", action="store_true")
    s.add_argument("--after-restore", action="store_true",
                   help="after a database restore, with every DAG paused and no run live: delete every "
                        "intermediate no lease holds, whatever its age (docs/deploy.md, After restoring the database)")
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser("search", help="full-text search over transcripts (websearch syntax)")
    s.add_argument("query", help='words, "a phrase", OR, -excluded')
    s.add_argument("--speaker", help="agent, customer, mixed ...")
    s.add_argument("--agent", help="agent id")
    s.add_argument("--from", dest="from_date", type=_day, help="first call date")
    s.add_argument("--to", dest="to_date", type=_day, help="last call date")
    s.add_argument("--min-duration", type=float, help="calls at least this long (seconds)")
    match = s.add_mutually_exclusive_group()
    match.add_argument("--fuzzy", action="store_const", const=True, default=None,
                       help="similar matches (misspellings, names, swapped letters) after the exact ones, always")
    match.add_argument("--exact", dest="fuzzy", action="store_const", const=False,
                       help="exact matches only (by default similar ones are shown when nothing matches exactly)")
    s.add_argument("--limit", type=int, default=20)
    ranking = s.add_mutually_exclusive_group()
    ranking.add_argument("--recent-days", type=int, default=1, metavar="N",
                         help="rank the newest N days with calls first, widening until enough hits (default 1)")
    ranking.add_argument("--all-dates", action="store_true", help="rank every match in the range (slower)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("bench", help="speed and accuracy of an engine on a labelled sample")
    s.add_argument("--engine", default=DEFAULT_ENGINE, choices=available())
    s.add_argument("--dir", help="folder of audio files and labels.json (default: the shipped samples)")
    s.add_argument("--repeat", type=int, default=1, help="use the sample this many times (bigger batches)")
    s.add_argument("--batch-audio-s", type=float, default=240.0, help="audio seconds per batch")
    s.add_argument("--json", action="store_true")
    g = s.add_argument_group("throughput at a fixed shape (no WER): --batch or --random-weights")
    g.add_argument("--batch", type=int, help="chunks per batch (default 128 with --random-weights)")
    g.add_argument("--chunk-s", type=float, default=30.0, help="seconds per chunk")
    g.add_argument("--batches", type=int, default=3, help="timed batches (the median is reported)")
    g.add_argument("--warmup", type=int, default=1, help="untimed batches first")
    g.add_argument("--random-weights", action="store_true",
                   help="granite-nar-native only: the architecture with random weights, no checkpoint needed")
    g.add_argument("--config", choices=["tiny", "full"], default="full", help="model size for --random-weights")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("parity", help="native Granite NAR against the reference engine on the same audio")
    s.add_argument("--model", required=True, help="the checkpoint folder (pinned revision)")
    s.add_argument("--dir", help="folder of audio files and labels.json (default: the shipped samples)")
    s.add_argument("--batch", type=int, default=1, help="chunks per batch; >1 adds the reference's batch dependence")
    s.add_argument("--device", help="cuda, cuda:N or cpu (default: CALLSCRIBE_DEVICE, else cuda when available)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_parity)

    s = sub.add_parser("pod-spec", help="print the worker pod manifest the DAG would create (no cluster needed)")
    s.add_argument("--job", default="s3://calls/_callscribe/runs/example/jobs/job-00000.json")
    s.set_defaults(func=cmd_pod_spec)

    s = sub.add_parser("ui", help="the Airflow UI on the embedded services (API server, scheduler, DAG "
                                  "processor, triggerer)")
    s.set_defaults(func=cmd_ui)

    s = sub.add_parser("demo", help="start services, upload samples, run one day, show results")
    s.add_argument("--date", type=_day, default=date(2026, 11, 24))
    s.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    # Some libraries warn without a private runtime folder (no login session on servers).
    # (Only a development install has a project-local place for it; production leaves it unset.)
    services = _embedded()
    if services is not None and not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = str(services._runtime_dir(services.profile(os.environ.get(
            "CALLSCRIBE_PROFILE", "dev"))))
    logging.basicConfig(level=os.environ.get("CALLSCRIBE_LOG_LEVEL", "WARNING"),
                        format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        from callscribe.db import MigrationBlocked, SchemaBehind

        if isinstance(exc, SchemaBehind):  # an operator's step, not a bug: the message says which
            print(f"callscribe: {exc}", file=sys.stderr)
            return 3
        if isinstance(exc, MigrationBlocked):  # other sessions' locks: the message names them; try again
            print(f"callscribe: {exc}", file=sys.stderr)
            return 4
        if type(exc).__name__ == "AirflowNotFoundException":  # a connection not set up: say which, and how
            print(f"callscribe: {exc}. Set AIRFLOW_CONN_<ID> for it (or the CALLSCRIBE_S3_* / CALLSCRIBE_PG_* "
                  "variables), or point a secrets backend at it: docs/connections.md", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
