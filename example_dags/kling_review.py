"""A person reviews each video before it is published, in Airflow's human-in-the-loop review.

Each take is generated, then waits for a reviewer (``HITLOperator``, from the standard provider,
Airflow 3.1+). The reviewer sees the prompt, a link to the video and what it cost. They choose
Approve or Reject and may leave a note. An approved take is kept under ``video_dir`` and announced
as an Asset event (``KlingKeepVideoOperator``). A rejected take is generated again with the note
added to the prompt. This happens at most ``ATTEMPTS`` times, and all takes together stay under
the run's credit limit. If the last take is rejected too, the run fails and says so.

Answer in the UI (the task's Required Actions), or through the REST API as a reviewer::

    PATCH /api/v2/dags/kling_review/dagRuns/{run_id}/taskInstances/review_1/-1/hitlDetails
    {"chosen_options": ["Reject"], "params_input": {"note": "warmer light, slower camera"}}
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import DAG, Param, task

from airflow_provider_kling.core.dialects.ulazai import PRICES
from airflow_provider_kling.operators.kling import KlingGenerateOperator, KlingKeepVideoOperator

#: Takes a run may generate before it gives up.
ATTEMPTS = 3
#: What the run may spend on them: ATTEMPTS silent 5 s takes.
CREDIT_LIMIT = ATTEMPTS * PRICES[("5", False)]
APPROVE, REJECT = "Approve", "Reject"
#: A reviewer's note on take REVIEW, added to the next takes' prompt.
NOTE = (
    "{% set note = ((ti.xcom_pull(task_ids='REVIEW') or {}).get('params_input') or {}).get('note') %}"
    "{% if note %}. {{ note }}{% endif %}"
)


def prompt_of_take(attempt: int) -> str:
    """The prompt template of take ``attempt``: the DAG's prompt and every earlier reviewer's note."""
    return "{{ params.prompt }}" + "".join(NOTE.replace("REVIEW", f"review_{j}") for j in range(1, attempt))


def review_body(attempt: int) -> str:
    result = f"ti.xcom_pull(task_ids='generate_{attempt}')"
    return (
        f"**Prompt:** {prompt_of_take(attempt)}\n\n"
        f"**Video:** [watch take {attempt}]({{{{ {result}['video_url'] }}}})\n\n"
        f"**Credits:** {{{{ {result}['credits_used'] }}}} for this take; the run may spend "
        f"{CREDIT_LIMIT} on {ATTEMPTS} takes.\n\n"
        f"{APPROVE} publishes this take. {REJECT} asks for take {attempt + 1} with your note added to "
        "the prompt"
        + ("." if attempt < ATTEMPTS else f"; this is the last take ({ATTEMPTS}), so the run ends.")
    )


with DAG(
    dag_id="kling_review",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kling", "example", "review"],
    params={
        "prompt": "A lighthouse at dusk, waves breaking on the rocks, slow aerial orbit",
        "video_dir": "/tmp/kling-videos",
    },
    default_args={"run_credit_limit": CREDIT_LIMIT},
):

    @task
    def no_take_approved() -> None:
        raise AirflowFailException(f"All {ATTEMPTS} takes were rejected: nothing was published.")

    gave_up = no_take_approved()
    after_rejection: Any = None
    for attempt in range(1, ATTEMPTS + 1):
        generate = KlingGenerateOperator(
            task_id=f"generate_{attempt}", prompt=prompt_of_take(attempt), deferrable=True
        )
        review = HITLOperator(
            task_id=f"review_{attempt}",
            subject=f"Kling video, take {attempt} of {ATTEMPTS}: publish it?",
            body=review_body(attempt),
            options=[APPROVE, REJECT],
            params={"note": Param("", type="string", title="Note (for a rejection: what to change)")},
        )
        publish = KlingKeepVideoOperator(
            task_id=f"publish_{attempt}",
            kling_task_id=f"{{{{ ti.xcom_pull(task_ids='generate_{attempt}', key='task_id') }}}}",
            output_path="file://{{ params.video_dir }}/{{ run_id }}.mp4",
        )
        next_take = f"generate_{attempt + 1}" if attempt < ATTEMPTS else gave_up.operator.task_id

        @task.branch(task_id=f"decide_{attempt}")
        def decide(answer: dict[str, Any], approved: str = publish.task_id, rejected: str = next_take) -> str:
            return approved if APPROVE in answer["chosen_options"] else rejected

        decision = decide(review.output)
        if after_rejection is not None:
            after_rejection >> generate
        generate >> review
        decision >> publish
        after_rejection = decision
    after_rejection >> gave_up
