# Airflow with the callscribe DAGs, plugins and package, on the official image.
#   docker build -f docker/airflow.Dockerfile -t callscribe/airflow:0.1.0 .
# The official image already holds Airflow: this adds only what it lacks, at the versions
# of constraints.txt: the callscribe package with its dependencies and the embedded CPU
# engine (for transcribe_calls, whose worker runs beside the task), and the two providers the DAG uses, at
# the versions the tests ran with. Airflow itself is not installed again: constraints.txt
# pins the image's own version, so pip keeps it, and the build fails if it ever changes.
# Versions: docker/versions.env (checked by tests/unit/test_images.py).
ARG AIRFLOW_VERSION=3.3.2
ARG AIRFLOW_PYTHON=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${AIRFLOW_PYTHON}
ARG AIRFLOW_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

COPY --chown=airflow:root constraints.txt pyproject.toml README.md /opt/callscribe/
COPY --chown=airflow:root include /opt/callscribe/include
# callscribe.dev (embedded services, demo, bench, parity) is development tooling: deleted
# in the same layer as the install, so no layer of the image holds it.
RUN pip install --no-cache-dir -c /opt/callscribe/constraints.txt \
        "/opt/callscribe[embedded]" \
        apache-airflow-providers-cncf-kubernetes \
        apache-airflow-providers-postgres \
    && pip show apache-airflow | grep -x "Version: ${AIRFLOW_VERSION}" \
    && python -c "import pathlib, shutil, callscribe; shutil.rmtree(pathlib.Path(callscribe.__file__).parent / 'dev')"
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
