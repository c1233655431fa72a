"""`make demo`: embedded services, sample calls, one day through the real DAG, results."""

from __future__ import annotations

import logging
import textwrap
from datetime import date

from callscribe.dev import services

DEMO_QUERY = '"cancel my account"'


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
    print("4/4 transcripts in Postgres:")
    with engine.connect() as conn:
        for r in conn.execute(db.q("transcripts_day"), {"call_date": day}):
            head = f"  {r.object_key} [channel {r.channel}, {r.speaker}, {r.n_segments} segments]"
            print(head)
            print(textwrap.indent(textwrap.fill(r.text or "(no speech)", 96), "      "))
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
