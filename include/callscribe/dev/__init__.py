"""Development tooling: the embedded services (PostgreSQL, SeaweedFS, Airflow) that
`make demo` and the tests run on, the demo itself, `callscribe bench` and `callscribe
parity`, and the WER they measure with. Nothing the pipeline runs imports this package
(tests/unit/test_import_graph.py checks it), and the production images delete it after
installing callscribe, so the `services`, `ui`, `demo`, `bench` and `parity` commands exist
only in a development install (`pip install -e '.[dev]'`).
"""
