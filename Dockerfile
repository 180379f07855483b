# The Airflow image of the compose stack: the project's pinned requirements baked in, not installed at start.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt /opt/project/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /opt/project/requirements.txt
COPY --chown=airflow:root scoring /opt/project/scoring
COPY --chown=airflow:root localml /opt/project/localml
COPY --chown=airflow:root devstack /opt/project/devstack
# The project as an Airflow provider (its entry point only): the azure_ml connection type and its form.
COPY --chown=airflow:root pyproject.toml /opt/project/pyproject.toml
COPY --chown=airflow:root plugins /opt/project/plugins
RUN pip install --no-cache-dir --no-deps /opt/project
ENV PYTHONPATH=/opt/project:/opt/airflow/plugins
