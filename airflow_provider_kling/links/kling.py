"""The "Kling video" button on a finished generation's task page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.compat.sdk import BaseOperatorLink

from airflow_provider_kling.core.urls import is_http_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: The attribute on which an operator or sensor keeps the video_url its current try produced.
VIDEO_URL_ATTRIBUTE = "kling_video_url"


class KlingVideoLink(BaseOperatorLink):
    """Opens the finished video; empty (so no button) until the task has a video_url.

    Airflow computes an operator's links in the worker as each try ends, deferrals included, and
    keeps them for the UI. Reading what this try produced from the operator, not the task's
    return value from XCom, avoids asking for a result that does not exist yet while the task is
    deferred, which Airflow logs as an error.
    """

    name = "Kling video"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return link_to(getattr(operator, VIDEO_URL_ATTRIBUTE, None))


def link_to(video_url: object) -> str:
    """The link's target for a video_url: itself when it is an http(s) URL, else none (no button)."""
    return str(video_url) if is_http_url(video_url) else ""
