"""Airflow plugin: the analysts' call search page, in the UI's navigation.

The link shows for every user; the app behind it lets in only those the auth manager grants
"Call Transcripts" (callscribe.access), and logs every use (docs/analysts.md, "Who can see what").
"""

from airflow.plugins_manager import AirflowPlugin

from callscribe.search_page import create_app


class CallscribeSearchPlugin(AirflowPlugin):
    name = "callscribe_search"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/callscribe", "name": "callscribe call search"}]
    external_views = [{
        "name": "Call search",
        "href": "/callscribe/",
        "url_route": "call-search",
        "destination": "nav",
        "category": "browse",
    }]
