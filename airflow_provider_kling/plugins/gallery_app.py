"""The gallery's FastAPI app, served by the api-server: a page of recent Kling generations and the
kept videos it plays, for logged-in users and only from the DAGs they may read.

What it shows comes from Airflow's own records of each KlingGenerateOperator (or ``@task.kling``)
task instance: its result (XCom ``return_value``), its rendered prompt (a ``@task.kling`` function's
request: XCom ``kling_request``), and its DAG run's credit ledger (XCom ``kling_credits``). Access
is Airflow's auth manager's: a DAG's generations are listed only to a user allowed to read both its
task instances and its XComs.

A kept copy is read from where a task wrote it, and the path comes from an XCom, which users allowed
to edit XComs can rewrite: so a copy is served only from a Kling task's result, only from under the
locations listed in ``[kling] gallery_video_roots``, and only if it begins as an MP4 file does.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import PurePosixPath
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.configuration import conf
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.models.renderedtifields import RenderedTaskInstanceFields
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from airflow_provider_kling.core.run_credits import LedgerEntry
from airflow_provider_kling.decorators.kling import REQUEST_KEY, KlingDecoratedOperator
from airflow_provider_kling.operators.kling import LEDGER_KEY, KlingGenerateOperator, KlingKeepVideoOperator

#: What Airflow records as the operator of a generation task instance (its class): the operator's,
#: or @task.kling's.
TASKFLOW_NAME = KlingDecoratedOperator.__name__
GENERATORS = (KlingGenerateOperator.__name__, TASKFLOW_NAME)
#: The operators whose results may name a kept copy of a video.
KEEPERS = (*GENERATORS, KlingKeepVideoOperator.__name__)
RESULT_KEY = "return_value"
#: States of a generation that never ran, and has nothing to show.
NEVER_RAN = ("skipped", "upstream_failed", "removed")
#: Generations on one page, by default and at most.
PAGE_SIZE, PAGE_SIZE_CAP = 60, 500
#: A kept video is streamed to the browser in pieces of this size.
CHUNK_BYTES = 1024 * 1024
#: An MP4 file (ISO base media) begins with a box's 4-byte size, then its type: this.
MP4_BOX_TYPE = b"ftyp"
VIDEO_TYPE = "video/mp4"


@dataclass(frozen=True)
class Generation:
    """One generation task instance, as the gallery shows it."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str | None
    run_after: datetime | None
    prompt: str | None
    mode: str | None
    duration: Any
    sound: bool | None
    credits: float | None
    video_url: str | None
    kept: tuple[str, int, str] | None
    """Where a copy of the video was kept: (task, map index) of the task instance that kept it (this
    one with ``output_path``, or a KlingKeepVideoOperator of the run), and the copy's path."""
    unit: str = "credits"
    """What ``credits`` counts: its API's unit, as its entry in the run's credit ledger says."""

    @property
    def run(self) -> tuple[str, str]:
        return self.dag_id, self.run_id


def readable_dags(session: Session, user: Any, dag_ids: set[str]) -> set[str]:
    """Those of ``dag_ids`` whose task instances and XComs ``user`` may read. Each DAG is named with
    its team, as Airflow's own API routes name it, so a multi-team auth manager judges it rightly."""
    auth = get_auth_manager()

    def readable(dag_id: str) -> bool:
        details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id, session=session))
        return auth.batch_is_authorized_dag(
            [
                {"method": "GET", "access_entity": entity, "details": details}
                for entity in (DagAccessEntity.TASK_INSTANCE, DagAccessEntity.XCOM)
            ],
            user=user,
        )

    return {dag_id for dag_id in dag_ids if readable(dag_id)}


def video_roots() -> list[str]:
    """The locations kept copies may be served from: ``[kling] gallery_video_roots``, comma-separated."""
    listed = conf.get("kling", "gallery_video_roots", fallback="") or ""
    return [root.strip() for root in listed.split(",") if root.strip()]


#: What makes fsspec read a path differently from a plain URL: chained URLs ("::"), and a query,
#: fragment or home folder it keeps where urlsplit cuts or leaves them.
UNPLAIN = ("::", "?", "#")


def _location(path: str) -> tuple[str, str, PurePosixPath] | None:
    """(scheme, bucket and connection, path) of a plain local path or object storage URL; a local
    one with its symlinks and ``..`` resolved. None for anything a reader could take for another."""
    if any(mark in path for mark in UNPLAIN) or path.startswith("~"):
        return None
    split = urlsplit(path)
    if split.scheme in ("", "file"):
        if split.netloc or not split.path.startswith("/"):
            return None
        return "file", "", PurePosixPath(os.path.realpath(split.path))
    where = PurePosixPath(split.path or "/")
    if ".." in where.parts or not where.is_absolute():
        return None
    return split.scheme, split.netloc, where


def under_roots(path: str, roots: list[str]) -> bool:
    """Whether ``path`` lies under one of ``roots``, by whole path segments."""
    return _within(_location(path), roots)


def _within(where: tuple[str, str, PurePosixPath] | None, roots: list[str]) -> bool:
    return where is not None and any(
        (allowed := _location(root)) is not None
        and where[:2] == allowed[:2]
        and where[2].is_relative_to(allowed[2])
        for root in roots
    )


def kept_video_response(path: str, roots: list[str]) -> Response | None:
    """What plays the MP4 at ``path``, if it may be served: under ``roots``, readable, and an MP4.
    A local file is sent as a file (its size and byte ranges, so a player can seek), opened at the
    very path judged, not through fsspec, which may read it otherwise; a remote one is streamed.
    None otherwise (why is not said: the answer would map the server's files)."""
    where = _location(path)
    if where is None or not _within(where, roots):
        return None
    from airflow.sdk import ObjectStoragePath

    local = where[0] == "file"
    try:
        video = open(where[2], "rb") if local else ObjectStoragePath(path).open("rb")  # noqa: SIM115
    except Exception:  # not there, not readable, no such connection: all the same to the browser
        return None
    head = video.read(8)
    if head[4:8] != MP4_BOX_TYPE:
        video.close()
        return None
    if local:  # Starlette's FileResponse answers byte ranges
        video.close()
        return FileResponse(where[2], media_type=VIDEO_TYPE)

    def chunks() -> Iterator[bytes]:
        with video:
            yield head
            while chunk := video.read(CHUNK_BYTES):
                yield chunk

    return StreamingResponse(chunks(), media_type=VIDEO_TYPE)


def kling_dags(session: Session) -> set[str]:
    """Every DAG that has run a Kling generation."""
    query = select(TaskInstance.dag_id).where(TaskInstance.operator.in_(GENERATORS)).distinct()
    return set(session.scalars(query))


def _xcoms(
    session: Session, runs: set[tuple[str, str]], key: str, operators: tuple[str, ...]
) -> dict[tuple[str, str, str, int], Any]:
    """The XComs under ``key`` of the task instances of ``runs`` run by ``operators``, by (dag, run,
    task, map index)."""
    if not runs:
        return {}
    query = (
        select(XComModel)
        .join(
            TaskInstance,
            and_(
                TaskInstance.dag_id == XComModel.dag_id,
                TaskInstance.run_id == XComModel.run_id,
                TaskInstance.task_id == XComModel.task_id,
                TaskInstance.map_index == XComModel.map_index,
            ),
        )
        .where(
            XComModel.key == key,
            XComModel.dag_id.in_({dag_id for dag_id, _ in runs}),
            XComModel.run_id.in_({run_id for _, run_id in runs}),
            TaskInstance.operator.in_(operators),
        )
    )
    return {
        (row.dag_id, row.run_id, row.task_id, row.map_index): XComModel.deserialize_value(row)
        for row in session.scalars(query)
        if (row.dag_id, row.run_id) in runs
    }


def generations(
    session: Session, dag_ids: set[str], since: date | None, until: date | None, limit: int
) -> list[Generation]:
    """The newest generation task instances of ``dag_ids``, of runs between ``since`` and ``until``."""
    if not dag_ids:
        return []
    rows = session.execute(_generations_query(dag_ids, since, until, limit)).all()
    runs = {(ti.dag_id, ti.run_id) for ti, _ in rows}
    results = _xcoms(session, runs, RESULT_KEY, KEEPERS)
    kept_copies = _kept_copies(results)
    rendered = _rendered_fields(session, dag_ids, {run_id for _, run_id in runs})
    # A @task.kling function's request: its rendered fields hold only a placeholder.
    returned = _xcoms(session, runs, REQUEST_KEY, (TASKFLOW_NAME,))
    ledger = _xcoms(session, runs, LEDGER_KEY, GENERATORS)
    shown = []
    for ti, run_after in rows:
        key = (ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        result = results.get(key)
        result = result if isinstance(result, dict) else {}
        request = returned.get(key)
        fields = request if isinstance(request, dict) else rendered.get(key) or {}
        kept = kept_copies.get((ti.dag_id, ti.run_id, result.get("task_id")))
        entry = LedgerEntry.from_json(ledger.get(key))
        unit = entry.unit if entry is not None else "credits"
        shown.append(_generation(ti, run_after, result, fields, kept, unit))
    return shown


def _generations_query(dag_ids: set[str], since: date | None, until: date | None, limit: int) -> Any:
    query = (
        select(TaskInstance, DagRun.run_after)
        .join(DagRun, and_(DagRun.dag_id == TaskInstance.dag_id, DagRun.run_id == TaskInstance.run_id))
        .where(
            TaskInstance.operator.in_(GENERATORS),
            TaskInstance.dag_id.in_(dag_ids),
            TaskInstance.state.is_not(None),  # not yet scheduled
            TaskInstance.state.not_in(NEVER_RAN),
        )
        .order_by(DagRun.run_after.desc(), TaskInstance.task_id, TaskInstance.map_index)
        .limit(limit)
    )
    if since is not None:
        query = query.where(DagRun.run_after >= datetime.combine(since, time(), timezone.utc))
    if until is not None:
        query = query.where(
            DagRun.run_after < datetime.combine(until + timedelta(days=1), time(), timezone.utc)
        )
    return query


def _kept_copies(
    results: dict[tuple[str, str, str, int], Any],
) -> dict[tuple[str, str, Any], tuple[str, int, str]]:
    """Where a keeper task kept each vendor job's video: (its task_id, map index, path), by the
    (dag_id, run_id, vendor task_id) of the job."""
    return {
        (dag_id, run_id, result["task_id"]): (task_id, map_index, path)
        for (dag_id, run_id, task_id, map_index), result in results.items()
        if isinstance(result, dict) and (path := _text(result.get("path"))) and _text(result.get("task_id"))
    }


def _rendered_fields(session: Session, dag_ids: set[str], run_ids: set[str]) -> dict[Any, Any]:
    """The rendered template fields of the runs' task instances, by (dag_id, run_id, task_id, map_index)."""
    return {
        (row.dag_id, row.run_id, row.task_id, row.map_index): row.rendered_fields
        for row in session.scalars(
            select(RenderedTaskInstanceFields).where(
                RenderedTaskInstanceFields.dag_id.in_(dag_ids),
                RenderedTaskInstanceFields.run_id.in_(run_ids),
            )
        )
    }


def _generation(
    ti: TaskInstance,
    run_after: datetime,
    result: dict[str, Any],
    fields: dict[str, Any],
    kept: tuple[str, int, str] | None,
    unit: str,
) -> Generation:
    """One card's facts: the request from the rendered fields, the outcome from the result."""
    return Generation(
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        map_index=ti.map_index,
        state=ti.state,
        run_after=run_after,
        prompt=_text(fields.get("prompt")),
        mode=_text(fields.get("generation_mode"))
        or ("image_to_video" if fields.get("image_urls") else "text_to_video"),
        duration=result.get("duration", fields.get("duration")),
        sound=result.get("has_audio"),
        credits=result.get("credits_used"),
        video_url=_text(result.get("video_url")),
        kept=kept,
        unit=unit,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value and value != "None" else None


def run_spend(session: Session, shown: list[Generation]) -> dict[tuple[str, str], dict[str, float]]:
    """What each shown generation's DAG run spent, by unit (a run may use both APIs): the sum of its
    credit ledger, which counts every generation of the run (refused and failed ones too); else the
    shown results' charges."""
    runs = {generation.run for generation in shown}
    spent: dict[tuple[str, str], dict[str, float]] = {}
    for (dag_id, run_id, _, _), value in _xcoms(session, runs, LEDGER_KEY, GENERATORS).items():
        if (entry := LedgerEntry.from_json(value)) is not None:
            units = spent.setdefault((dag_id, run_id), {})
            units[entry.unit] = (
                units.get(entry.unit, 0) + entry.spent + (entry.pending if entry.sending else 0)
            )
    for generation in shown:
        if generation.run not in spent:
            units = {}
            for other in shown:
                if other.run == generation.run:
                    units[other.unit] = units.get(other.unit, 0) + (other.credits or 0)
            spent[generation.run] = units
    return spent


def _amounts(units: dict[str, float]) -> str:
    """``55 credits``, ``2.5 units``, or both for a run that used both APIs."""
    return " + ".join(f"{amount:g} {unit}" for unit, amount in sorted(units.items())) or "0"


def create_app() -> FastAPI:
    app = FastAPI(title="Kling gallery", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/gallery", response_class=HTMLResponse)
    def gallery(
        user: GetUserDep,
        session: SessionDep,
        dag_id: str | None = None,
        since: date | None = None,
        until: date | None = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_CAP)] = PAGE_SIZE,
    ) -> str:
        dags = readable_dags(session, user, kling_dags(session))
        chosen = dags & {dag_id} if dag_id else dags
        shown = generations(session, chosen, since, until, limit)
        return page(shown, run_spend(session, shown), sorted(dags), dag_id, since, until)

    @app.get("/videos/{dag_id}/{run_id}/{task_id}/{map_index}")
    def kept_video(
        dag_id: str, run_id: str, task_id: str, map_index: int, user: GetUserDep, session: SessionDep
    ) -> Response:
        """The copy of a video a Kling task instance kept (``output_path``, or KlingKeepVideoOperator),
        read from where its result says it wrote it. The request names the task, never a path."""
        if not readable_dags(session, user, {dag_id}):
            raise HTTPException(404, "No such video")
        results = _xcoms(session, {(dag_id, run_id)}, RESULT_KEY, KEEPERS)
        result = results.get((dag_id, run_id, task_id, map_index))
        kept = _text(result.get("path")) if isinstance(result, dict) else None
        response = kept_video_response(kept, video_roots()) if kept is not None else None
        if response is None:
            raise HTTPException(404, "No such video")
        return response

    return app


# -- the page --------------------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1a202c; }
h1 { font-size: 20px; margin: 0 0 12px; } h2 { font-size: 16px; margin: 20px 0 8px; }
form { display: flex; gap: 12px; align-items: end; flex-wrap: wrap; margin-bottom: 8px; }
label { display: flex; flex-direction: column; font-size: 12px; color: #4a5568; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 14px; }
.card { border: 1px solid #e2e8f0; border-radius: 8px; padding: 10px; }
video { width: 100%; border-radius: 6px; background: #000; aspect-ratio: 16 / 9; }
.none { display: flex; align-items: center; justify-content: center; aspect-ratio: 16 / 9;
        background: #edf2f7; border-radius: 6px; color: #718096; }
.prompt { margin: 8px 0 4px; } .facts, .source { color: #4a5568; font-size: 12px; }
.source { overflow-wrap: anywhere; }
table { border-collapse: collapse; } td, th { padding: 4px 12px 4px 0; text-align: left; }
td.n { text-align: right; } a { color: #2b6cb0; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _path(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


def _ui_link(generation: Generation, task: bool) -> str:
    """The Airflow UI's page of the generation's DAG run or task instance (relative to /kling/gallery)."""
    link = f"../dags/{_path(generation.dag_id)}/runs/{_path(generation.run_id)}"
    if task:
        link += f"/tasks/{_path(generation.task_id)}"
        if generation.map_index >= 0:
            link += f"/mapped/{generation.map_index}"
    return link


def _video(generation: Generation) -> str:
    """The kept copy if the api-server may serve it, else the vendor's link, else nothing."""
    kept_note = ""
    if generation.kept:
        task_id, map_index, path = generation.kept
        if under_roots(path, video_roots()):
            source = _path(generation.dag_id, generation.run_id, task_id, str(map_index))
            return (
                f'<video controls preload="metadata" src="videos/{_e(source)}"></video>'
                f'<div class="source">the kept copy: {_e(path)}</div>'
            )
        kept_note = (
            f'<div class="source">kept at {_e(path)}, which is not under [kling] gallery_video_roots: '
            "the gallery does not serve it</div>"
        )
    if generation.video_url and urlsplit(generation.video_url).scheme in ("http", "https"):
        return (
            f'<video controls preload="metadata" src="{_e(generation.video_url)}"></video>'
            '<div class="source">the vendor\'s link (it may expire)</div>' + kept_note
        )
    return '<div class="none">no video</div>' + kept_note


def _card(generation: Generation) -> str:
    index = f"[{generation.map_index}]" if generation.map_index >= 0 else ""
    facts = [
        generation.mode or "",
        f"{generation.duration} s" if generation.duration is not None else "",
        {True: "sound", False: "silent", None: ""}[generation.sound],
        f"{generation.credits:g} {generation.unit}" if generation.credits is not None else "",
        generation.state or "",
    ]
    return (
        '<div class="card">'
        + _video(generation)
        + f'<div class="prompt">{_e(generation.prompt or "")}</div>'
        + f'<div class="facts">{_e(" · ".join(fact for fact in facts if fact))}</div>'
        + f'<div class="facts"><a target="_top" href="{_e(_ui_link(generation, True))}">'
        + f"{_e(generation.dag_id)}.{_e(generation.task_id)}{_e(index)}</a> in run "
        + f'<a target="_top" href="{_e(_ui_link(generation, False))}">{_e(generation.run_id)}</a></div>'
        + "</div>"
    )


def page(
    shown: list[Generation],
    spend: dict[tuple[str, str], dict[str, float]],
    dags: list[str],
    dag_id: str | None,
    since: date | None,
    until: date | None,
) -> str:
    options = '<option value="">all DAGs</option>' + "".join(
        f'<option value="{_e(dag)}"{" selected" if dag == dag_id else ""}>{_e(dag)}</option>' for dag in dags
    )
    runs: dict[tuple[str, str], Generation] = {}
    for generation in shown:
        runs.setdefault(generation.run, generation)
    rows = "".join(
        f"<tr><td>{_e(dag)}</td><td><a target='_top' href='{_e(_ui_link(first, False))}'>{_e(run)}</a></td>"
        f"<td>{_e(first.run_after.date() if first.run_after else '')}</td>"
        f"<td class='n'>{sum(1 for g in shown if g.run == (dag, run))}</td>"
        f"<td class='n'>{_e(_amounts(spend.get((dag, run), {})))}</td></tr>"
        for (dag, run), first in runs.items()
    )
    cards = "".join(_card(generation) for generation in shown) or "<p>No Kling generations to show.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kling gallery</title><style>{STYLE}</style></head>
<body>
<h1>Kling gallery</h1>
<form method="get">
  <label>DAG <select name="dag_id">{options}</select></label>
  <label>Runs from <input type="date" name="since" value="{_e(since or "")}"></label>
  <label>to <input type="date" name="until" value="{_e(until or "")}"></label>
  <button type="submit">Show</button>
</form>
<div class="grid">{cards}</div>
<h2>Spent per DAG run</h2>
<table><tr><th>DAG</th><th>run</th><th>date</th><th>generations shown</th><th>spent</th></tr>
{rows}</table>
</body></html>"""
