"""`make demo`: embedded services, sample calls, one day through the real DAG, results."""

from __future__ import annotations

import logging
import textwrap
from datetime import date

from callscribe.dev import services

DEMO_QUERY = '"cancel my account"'


def transcript_lines(engine, day: date) -> list[str]:
    """A day's transcripts, a header and the wrapped text per channel."""
    from callscribe import db

    out = []
    with engine.connect() as conn:
        for r in conn.execute(db.q("transcripts_day"), {"call_date": day}):
            out.append(f"  {r.object_key} [channel {r.channel}: {r.speakers or 'no speech'}, {r.n_segments} segments]")
            out.append(textwrap.indent(textwrap.fill(r.text or "(no speech)", 96), "      "))
    return out


def run_demo(profile: services.Profile, day: date) -> int:
    from callscribe import db
    from callscribe.discovery import day_prefix
    from callscribe.local_run import run_day
    from callscribe.samples import sample_files
    from callscribe.search import highlight, search
    from callscribe.storage import store

    print(f"1/4 starting embedded services in {profile.root} ...")
    services.up(profile)
    st = store()
    print(f"2/4 uploading {len(sample_files())} sample calls to s3://{st.bucket}/{day_prefix('calls/', day)}")
    for f in sample_files():
        st.put_bytes(st.uri(day_prefix("calls/", day) + f.name), f.read_bytes(),
                     metadata={"agent-id": "agent-007"})
    print(f"3/4 running the transcribe_calls DAG for {day} (dag.test) ...")
    logging.getLogger("airflow").setLevel(logging.WARNING)
    dr = run_day(day)
    print(f"    run {dr.run_id}: {dr.state}")
    engine = db.engine_from_env()
    print("4/4 transcripts in Postgres, as analysts see them (numbers masked):")
    for line in transcript_lines(engine, day):
        print(line)
    print(f"\nsearch {DEMO_QUERY}:")
    for h in search(engine, DEMO_QUERY, limit=5):
        print(f"  {h['object_key']} {h['speaker']} at {h['hit_s']:.2f} s ({h['start_s']:.2f}-{h['end_s']:.2f} s): "
              f"{highlight(h['snippet'])}")
    print(textwrap.dedent(f"""
        Next:
          .venv/bin/callscribe status --date {day}
          .venv/bin/callscribe search 'discount OR refund'
          make ui      # Airflow UI on http://127.0.0.1:8080 (loopback only, no login)
          make down    # stop the embedded services (data stays in .callscribe/)
        """))
    return 0 if str(dr.state).endswith("success") else 1
