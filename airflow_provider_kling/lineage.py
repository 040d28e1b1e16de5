"""OpenLineage for Kling generations, with apache-airflow-providers-openlineage (the ``openlineage``
extra). Imported only when OpenLineage asks a finished task for its lineage, so the operator's
module stays light at DAG-parse time and the provider works without the extra."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.openlineage.facet import Dataset, RunFacet
from airflow.providers.openlineage.extractors import OperatorLineage
from attrs import define

from airflow_provider_kling.core.request import GenerationRequest

#: The vendor's model: the API has one, Kling 2.6.
MODEL = "kling-2.6"
#: The run facet's key in a lineage event.
FACET_KEY = "kling_generation"


@define
class KlingGenerationRunFacet(RunFacet):
    """How a video was made. ``prompt`` only when the task opted in: prompts can be confidential.

    :param model: the vendor's model (``kling-2.6`` on UlazAI's API, the ``model_name`` on Kling's own).
    :param mode: ``text_to_video`` or ``image_to_video``.
    :param duration: the video's length in seconds.
    :param sound: whether it was generated with sound.
    :param aspectRatio: the aspect ratio asked for, if any.
    :param creditsUsed: what the generation cost, in ``creditUnit``.
    :param creditUnit: ``credits`` (UlazAI's API) or ``units`` (Kling's own).
    :param vendorTaskId: the vendor's task_id for the job.
    :param prompt: the prompt, when ``openlineage_include_prompt`` is set.
    """

    model: str
    mode: str
    duration: int
    sound: bool
    aspectRatio: str | None
    creditsUsed: float | None
    vendorTaskId: str
    prompt: str | None = None
    creditUnit: str = "credits"


def dataset_at(url: str) -> Dataset:
    """A dataset named as OpenLineage names one at ``url``: a local file, an object store's, or a web
    address (namespace ``scheme://authority``)."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return Dataset(namespace="file", name=parts.path)
    name = parts.path if parts.scheme in ("http", "https") else parts.path.lstrip("/")
    # The host alone: never a URL's user and password, nor the connection id ObjectStoragePath keeps.
    authority = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    return Dataset(namespace=f"{parts.scheme}://{authority}", name=name or "/")


def lineage_of(
    request: GenerationRequest, result: dict[str, Any] | None, include_prompt: bool
) -> OperatorLineage:
    """The input images, the kept video (``result["path"]``) and the run facet of a finished generation."""
    lineage: OperatorLineage = OperatorLineage(inputs=[dataset_at(url) for url in request.image_urls])
    if result is None:  # no video this try (e.g. wait_for_completion=False): only what went in
        return lineage
    if result.get("path"):
        lineage.outputs.append(dataset_at(result["path"]))
    lineage.run_facets[FACET_KEY] = KlingGenerationRunFacet(
        model=request.model_name or MODEL,
        mode=request.generation_mode.value,
        duration=int(result["duration"] or request.duration),
        sound=request.sound,
        aspectRatio=request.aspect_ratio,
        creditsUsed=result["credits_used"],
        vendorTaskId=result["task_id"],
        prompt=request.prompt if include_prompt else None,
        creditUnit=request.dialect.credit_unit,
    )
    return lineage
