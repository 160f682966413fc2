"""The per-source hourly job cap (RELAY_SOURCE_MAX_JOBS_PER_HOUR), counted per minute on both engines."""

from __future__ import annotations

from typing import Any

import pytest

from dispatch.errors import TooManyRequests
from dispatch.model import now_ms


def test_the_cap_counts_this_hours_jobs_and_refuses_one_more(store: Any) -> None:
    source = store.create_source("apixo", token_hash="h-cap", description=None)
    made = [
        store.job_for_source(source, f"task_{n}", poll_at=None, deadline_at=None, max_per_hour=3)
        for n in range(3)
    ]
    assert len({job.id for job in made}) == 3
    with pytest.raises(TooManyRequests, match="created 3 jobs in the last hour"):
        store.job_for_source(source, "task_3", poll_at=None, deadline_at=None, max_per_hour=3)
    again = store.job_for_source(source, "task_0", poll_at=None, deadline_at=None, max_per_hour=3)
    assert again.id == made[0].id  # a job already made is found, whatever the cap
    other = store.create_source("apixo", token_hash="h-other", description=None)
    assert (
        store.job_for_source(other, "task_0", poll_at=None, deadline_at=None, max_per_hour=3).id != made[0].id
    )


def test_counts_older_than_an_hour_do_not_count_and_are_dropped(store: Any) -> None:
    source = store.create_source("apixo", token_hash="h-old", description=None)
    minute = now_ms() // 60_000
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO source_job_counts (source_id, minute, jobs) VALUES (?, ?, 500), (?, ?, 1)",
            (source.id, minute - 61, source.id, minute - 59),
        )
    with pytest.raises(TooManyRequests):  # 1 job 59 minutes ago is inside the hour
        store.job_for_source(source, "task_a", poll_at=None, deadline_at=None, max_per_hour=1)
    store.job_for_source(source, "task_a", poll_at=None, deadline_at=None, max_per_hour=2)
    with store.transaction() as conn:
        minutes = [
            r["minute"]
            for r in conn.execute(
                "SELECT minute FROM source_job_counts WHERE source_id = ? ORDER BY minute", (source.id,)
            ).fetchall()
        ]
    assert minutes == [minute - 59, now_ms() // 60_000] or minutes == [minute - 59, minute]
