# Airflow with the callscribe DAGs and package, on the official image.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root constraints.txt pyproject.toml README.md /opt/callscribe/
COPY --chown=airflow:root include /opt/callscribe/include
RUN pip install --no-cache-dir -c /opt/callscribe/constraints.txt \
        "/opt/callscribe[airflow,embedded]"
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
