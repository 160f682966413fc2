"""The job state machine: monotonic transitions, one event per outcome and per progress percentage."""

from __future__ import annotations

from hypothesis import given, strategies as st

from dispatch.model import JobState, JobUpdate
from dispatch.state import transition

Q, R, S, F = JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED


def test_running_with_progress_emits_running_then_progress() -> None:
    """A first running update with 45 % emits job.running and job.progress(45)."""
    step = transition(Q, None, JobUpdate(R, progress=45))
    assert step.verdict == "applied"
    assert step.events == (("job.running", None), ("job.progress", 45))
    assert (step.status, step.progress) == (R, 45)


def test_terminal_success_sets_progress_100() -> None:
    """Success from running emits job.succeeded and sets progress to 100."""
    step = transition(R, 30, JobUpdate(S))
    assert step.events == (("job.succeeded", None),)
    assert step.progress == 100


def test_same_terminal_twice_is_duplicate() -> None:
    """A repeated terminal state emits nothing."""
    assert transition(S, 100, JobUpdate(S)).verdict == "duplicate"
    assert transition(S, 100, JobUpdate(S)).events == ()


def test_second_different_terminal_is_conflict() -> None:
    """Succeeded after failed is flagged as a conflict and changes nothing."""
    step = transition(F, None, JobUpdate(S))
    assert (step.verdict, step.status, step.events) == ("conflict", F, ())


def test_late_running_after_terminal_is_stale() -> None:
    """Running (or progress) after a terminal state is stale."""
    assert transition(S, 100, JobUpdate(R, progress=50)).verdict == "stale"


def test_lower_progress_is_stale_and_equal_is_duplicate() -> None:
    """Progress that goes backwards is stale; the same percentage again is a duplicate."""
    assert transition(R, 60, JobUpdate(R, progress=40)).verdict == "stale"
    assert transition(R, 60, JobUpdate(R, progress=60)).verdict == "duplicate"
    assert transition(R, 60, JobUpdate(R, progress=70)).events == (("job.progress", 70),)


def test_queued_after_running_is_stale() -> None:
    """A queued update after running does not move the job back."""
    assert transition(R, None, JobUpdate(Q)).verdict == "stale"


def test_unknown_state_changes_nothing() -> None:
    """An update the adapter could not map is recorded as unknown, never guessed."""
    step = transition(R, 10, JobUpdate(None, raw_state="WEIRD"))
    assert (step.verdict, step.status, step.progress, step.events) == ("unknown_state", R, 10, ())


states = st.sampled_from([Q, R, S, F, None])


@given(st.lists(st.tuples(states, st.one_of(st.none(), st.integers(-10, 120))), max_size=30))
def test_any_sequence_is_monotonic_and_emits_each_terminal_once(
    updates: list[tuple[JobState | None, int | None]],
) -> None:
    """Whatever updates arrive, in any order, the rank never decreases and at most one terminal event is emitted."""
    status, progress = Q, None
    terminal_events = 0
    seen_progress: set[int] = set()
    for state, pct in updates:
        step = transition(status, progress, JobUpdate(state, progress=pct))
        assert step.status.rank >= status.rank
        if status.terminal:
            assert step.status == status
        for event_type, value in step.events:
            if event_type in ("job.succeeded", "job.failed"):
                terminal_events += 1
            if event_type == "job.progress":
                assert value is not None and value not in seen_progress and 0 <= value <= 100
                seen_progress.add(value)
        status, progress = step.status, step.progress
    assert terminal_events <= 1
