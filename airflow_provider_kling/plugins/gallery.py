"""The Kling gallery: every recent generation's video, prompt and cost, inside the Airflow UI.

Registered by the package's ``airflow.plugins`` entry point (and in ``get_provider_info``, as
providers list their plugins), so installing the package is enough. The page is
a FastAPI app the api-server mounts at ``/kling``, shown in the UI's navigation as an external view.
Every component imports plugins (a task runner for their macros), and only the api-server serves
this one, so the app and what it needs are imported on the first request, not here.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

#: Where the api-server mounts the gallery's app.
URL_PREFIX = "/kling"


class _AppOnFirstRequest:
    """An ASGI app that builds the gallery's FastAPI app when the api-server first calls it."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_provider_kling.plugins.gallery_app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class KlingGalleryPlugin(AirflowPlugin):
    """Adds the Kling gallery page (``/kling/gallery``) and its entry in the UI's Browse menu."""

    name = "kling_gallery"
    # AirflowPlugin's attributes are plain class-level lists.
    fastapi_apps = [  # noqa: RUF012
        {"app": _AppOnFirstRequest(), "url_prefix": URL_PREFIX, "name": "Kling gallery"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Kling gallery",
            "href": f"{URL_PREFIX}/gallery",
            "url_route": "kling-gallery",
            "destination": "nav",
            "category": "browse",
        }
    ]
