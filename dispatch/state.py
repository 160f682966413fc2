"""The job state machine: which events a normalized update produces.

``queued → running → succeeded | failed`` (DESIGN.md, "Normalized job state"). Transitions are
monotonic: a late ``running`` or progress after a terminal state changes nothing and emits nothing; a
conflicting second terminal (succeeded after failed) is flagged, not emitted. Progress produces one
``job.progress`` event per distinct, increasing percentage.

The one move out of a terminal state: ``failed → succeeded`` for a job the relay failed itself
(:func:`failed_by_relay`: its deadline passed, ``timeout``; its submit's outcome stayed unknown,
``vendor_timeout`` / ``outcome_unknown``; the vendor said success but never gave a URL, ``no_output``).
The relay gave up waiting, not the vendor: the vendor may still finish the job, and it bills for it (issue
20: seed 003 warns that 8k jobs run long; no seed sets a deadline). So a success that arrives later, by
callback or poll, is applied and emits ``job.succeeded`` once (its event id is the job's one succeeded
id), flagged ``after_relay_timeout``. A vendor's own ``failed`` stays final.
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


RELAY_FAILURES = frozenset({"timeout", "vendor_timeout", "outcome_unknown", "no_output"})
"""Error codes of failures the relay decides itself (the vendor never said ``failed``): a job past its
deadline (``timeout``; ``no_output`` when the vendor said success without a URL), a submit whose outcome
stayed unknown (``vendor_timeout``; ``outcome_unknown`` for a synchronous vendor)."""

RELAY_DECIDED_VIA = ("timeout", "submit")
"""The ``outcome_via`` of a terminal state the relay decided (not a vendor message): the job's deadline
passed, or its submit failed for good."""

AFTER_RELAY_TIMEOUT = "after_relay_timeout"
"""Job flag (and ``data.after_relay_timeout: true`` in its events): the vendor's success arrived after
the relay had failed the job itself (:func:`failed_by_relay`)."""


def failed_by_relay(status: JobState, error_code: str | None, outcome_via: str | None) -> bool:
    """True for a job the relay failed itself, which a later vendor success may still move to
    ``succeeded``: status ``failed``, a code of :data:`RELAY_FAILURES` and an outcome the relay decided
    (:data:`RELAY_DECIDED_VIA`), so that a vendor whose own error text happens to read ``"timeout"`` stays
    final. Example: ``failed_by_relay(FAILED, "timeout", "timeout")`` → ``True``;
    ``failed_by_relay(FAILED, "Timeout", "callback")`` (APIXO's failCode) → ``False``."""
    return status is JobState.FAILED and error_code in RELAY_FAILURES and outcome_via in RELAY_DECIDED_VIA


def _clamp(progress: int | None) -> int | None:
    return None if progress is None else max(0, min(100, progress))


def transition(
    status: JobState, progress: int | None, update: JobUpdate, *, reopenable: bool = False
) -> Transition:
    """Decide what ``update`` does to a job now in ``status`` with ``progress`` (0-100 or None).

    Pure function: no I/O, never raises. The verdict is one of ``applied``, ``duplicate``,
    ``stale`` (older than what we know), ``conflict`` (a second, different terminal state) or
    ``unknown_state`` (the adapter could not map the vendor's state; nothing is guessed).
    ``reopenable``: the job is ``failed`` by the relay itself (:func:`failed_by_relay`), so a
    ``succeeded`` update is applied (``job.succeeded``, progress 100) instead of being a conflict.
    """
    new = update.state
    if new is None:
        return Transition(UNKNOWN_STATE, status, progress)
    if reopenable and status is JobState.FAILED and new is JobState.SUCCEEDED:
        return Transition(APPLIED, new, 100, ((f"job.{new.value}", None),))
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
