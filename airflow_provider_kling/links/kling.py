"""The "Kling video" button on a finished generation's task page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class KlingVideoLink(BaseOperatorLink):
    """Opens the finished video; empty (so no button) until the task has returned a video_url."""

    name = "Kling video"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        result = XCom.get_value(ti_key=ti_key, key="return_value")
        video_url = result.get("video_url") if isinstance(result, dict) else None
        return (
            video_url if isinstance(video_url, str) and video_url.startswith(("http://", "https://")) else ""
        )
