"""The job state machine: which events a normalized update produces.

``queued → running → succeeded | failed`` (DESIGN.md, "Normalized job state"). Transitions are
monotonic: a late ``running`` or progress after a terminal state changes nothing and emits nothing; a
conflicting second terminal (succeeded after failed) is flagged, not emitted. Progress produces one
``job.progress`` event per distinct, increasing percentage.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatch.model import JobState, JobUpdate, Verdict

# Verdicts recorded on the inbound message that carried the update.
APPLIED = Verdict.APPLIED
DUPLICATE = Verdict.DUPLICATE
STALE = Verdict.STALE
CONFLICT = Verdict.CONFLICT
UNKNOWN_STATE = Verdict.UNKNOWN_STATE


@dataclass(frozen=True)
class Transition:
    """The decision for one update.

    ``events`` lists ``(event_type, progress)`` pairs to emit, in order; ``status`` and ``progress``
    are the job's values afterwards. Example: from ``queued`` an update ``running 45%`` gives
    ``Transition("applied", RUNNING, 45, (("job.running", None), ("job.progress", 45)))``.
    """

    verdict: str
    status: JobState
    progress: int | None
    events: tuple[tuple[str, int | None], ...] = ()


def _clamp(progress: int | None) -> int | None:
    return None if progress is None else max(0, min(100, progress))


def transition(status: JobState, progress: int | None, update: JobUpdate) -> Transition:
    """Decide what ``update`` does to a job now in ``status`` with ``progress`` (0-100 or None).

    Pure function: no I/O, never raises. The verdict is one of ``applied``, ``duplicate``,
    ``stale`` (older than what we know), ``conflict`` (a second, different terminal state) or
    ``unknown_state`` (the adapter could not map the vendor's state; nothing is guessed).
    """
    new = update.state
    if new is None:
        return Transition(UNKNOWN_STATE, status, progress)
    if status.terminal:
        if new == status:
            return Transition(DUPLICATE, status, progress)
        return Transition(CONFLICT if new.terminal else STALE, status, progress)
    if new.terminal:
        final_progress = 100 if new is JobState.SUCCEEDED else progress
        return Transition(APPLIED, new, final_progress, ((f"job.{new.value}", None),))
    if new.rank < status.rank:
        return Transition(STALE, status, progress)
    events: list[tuple[str, int | None]] = []
    if new.rank > status.rank:
        events.append((f"job.{new.value}", None))
    pct = _clamp(update.progress)
    new_progress = progress
    if pct is not None and new is JobState.RUNNING and (progress is None or pct > progress):
        events.append(("job.progress", pct))
        new_progress = pct
    elif pct is not None and progress is not None and pct < progress and not events:
        return Transition(STALE, status, progress)
    if not events:
        return Transition(DUPLICATE, status, progress)
    return Transition(APPLIED, new, new_progress, tuple(events))
