"""The end-to-end deployment's auth manager: Airflow's SimpleAuthManager, whose users can also be
kept from single DAGs.

SimpleAuthManager grants by role alone; per-DAG access comes from auth managers such as FAB's or
Keycloak's. This one adds just that, through the same ``is_authorized_dag`` that Airflow's own API
and UI ask (so the DAG is hidden from the user everywhere, not only in the gallery).
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

#: user name -> the DAGs that user may not see at all.
KEPT_FROM = {"outsider": {"kling_review"}}


class RestrictedAuthManager(SimpleAuthManager):
    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        if details is not None and details.id in KEPT_FROM.get(user.get_name(), set()):
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
