"""The embedded services' auth manager: Airflow's SimpleAuthManager plus callscribe's permission.

SimpleAuthManager grants every custom view to every Viewer, so it cannot say "this Viewer may
read call transcripts, that one may not". This subclass changes that one answer: the
"Call Transcripts" resource (:data:`callscribe.access.RESOURCE_NAME`) is granted to ADMIN users
and to the users named in CALLSCRIBE_DEV_ANALYSTS (comma-separated), nobody else. Every other
decision is SimpleAuthManager's.

For development, tests and demos only (``[core] auth_manager`` in the environment of
:mod:`callscribe.dev.services`). Production uses the FAB auth manager, where the same check is a
role holding ``can_read`` on "Call Transcripts" (docs/analysts.md).
"""

from __future__ import annotations

import os

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

from callscribe.access import RESOURCE_NAME

ANALYSTS_ENV = "CALLSCRIBE_DEV_ANALYSTS"


def dev_analysts() -> frozenset[str]:
    """The user names granted the permission besides admins (read on each check, so a test can set it)."""
    return frozenset(n.strip() for n in os.environ.get(ANALYSTS_ENV, "").split(",") if n.strip())


class CallscribeDevAuthManager(SimpleAuthManager):
    def is_authorized_custom_view(self, *, method, resource_name: str, user: SimpleAuthManagerUser) -> bool:
        if resource_name != RESOURCE_NAME:
            return super().is_authorized_custom_view(method=method, resource_name=resource_name, user=user)
        # A user without a role has no rights at all, whatever the list says.
        if not user.role:
            return False
        return self._is_admin(user) or user.get_name() in dev_analysts()
