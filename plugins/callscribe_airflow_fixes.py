"""Airflow plugin: callscribe's fix for an Airflow bug that breaks the UI's Clear of a red run
(callscribe.airflow_fixes), put in place in the API server, which loads this folder's plugins."""

from airflow.plugins_manager import AirflowPlugin

from callscribe.airflow_fixes import apply

apply()


class CallscribeAirflowFixes(AirflowPlugin):
    name = "callscribe_airflow_fixes"
