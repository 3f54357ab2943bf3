"""`trajlake dagger collect`: recorded tasks or PRs sent to the dagger stage for one iteration.

Each selected record becomes a DaggerTaskEvent carrying what the agent is asked, the
iteration's beta (the schedule's, or one given), the student (its id and its config, no
secrets) and the teacher (the configured one, or a replayed record's). Its id is made of the
record, the iteration, the student, the teacher, the seed and the schedule (beta, kappa,
label_every): collecting the same selection again adds nothing, and a new student, iteration
or schedule is a new collection beside the old.
"""

from __future__ import annotations

from trajlake.bus import Producer
from trajlake.config import BusConfig, Config, StudentConfig
from trajlake.consumers.scaffold_spec import load_scaffold
from trajlake.delivery import write_and_send
from trajlake.lake import Lake
from trajlake.schemas import DaggerTaskEvent, Event, PrEvent, make_event_id
from trajlake.teacher.client import teacher_id
from trajlake.teacher.student import student_id

CHUNK = 1000


def collect_events(
    chosen: list[Event],
    config: Config,
    iteration: int,
    beta: float | None = None,
    student: StudentConfig | None = None,
) -> list[DaggerTaskEvent]:
    """DaggerTaskEvents for `chosen` (tasks or PRs) at `iteration`."""
    student = student or config.student
    scaffold = load_scaffold(config.agent.scaffold).id()
    sid = student_id(student, scaffold)
    tid = teacher_id(config.teacher, scaffold)
    beta = config.dagger.beta_for(iteration) if beta is None else beta
    spec = student.model_dump_json()
    teacher_spec = config.teacher.model_dump_json()  # the labeller, wherever the stage runs
    dagger = config.dagger
    collection = (sid, tid, dagger.seed, beta, dagger.kappa, dagger.label_every)
    if dagger.label_budget_tokens:  # ids of collections without a budget stay as they were
        collection += (dagger.label_budget_tokens,)
    events = []
    for event in chosen:
        is_pr = isinstance(event, PrEvent)
        events.append(
            DaggerTaskEvent(
                event_id=make_event_id(event.event_id, "dagger", iteration, *collection),
                parent_ids=[event.event_id],
                stage="dagger-collect",
                **event.lineage() | {"teacher_id": tid, "teacher_spec": teacher_spec},
                source_table="prs" if is_pr else "tasks",
                source_event_id=event.event_id,
                task_id=event.task_id if is_pr else event.event_id,
                pr_id=event.event_id if is_pr else "",
                request=event.pr_text if is_pr else event.request,
                iteration=iteration,
                beta=beta,
                kappa=config.dagger.kappa,
                label_every=config.dagger.label_every,
                label_budget_tokens=config.dagger.label_budget_tokens,
                seed=config.dagger.seed,
                student_id=sid,
                student_spec=spec,
            )
        )
    return events


def publish(events: list[DaggerTaskEvent], lake: Lake, producer: Producer, bus: BusConfig) -> None:
    """Lake first, then the bus, in chunks; publishing the same events again changes nothing."""
    for i in range(0, len(events), CHUNK):
        chunk = events[i : i + CHUNK]
        name = f"dagger-{chunk[0].iteration}-{chunk[0].student_id}-{chunk[0].event_id[:12]}"
        write_and_send(lake, producer, bus, "dagger.tasks", chunk, name)
