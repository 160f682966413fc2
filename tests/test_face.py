"""The async store face: one verb per engine verb, reads on the reader, writes on the writer."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography.fernet import Fernet

from dispatch.model import JobState, JobUpdate, Output
from dispatch.secretbox import SecretBox
from dispatch.store.face import RunnerStore, Store
from dispatch.store.records import RawMessage
from dispatch.store.runner import StoreRunner
from dispatch.store.sqlite import SQLiteStore

T = TypeVar("T")
# connection handling and in-transaction helpers, not domain verbs
ENGINE_ONLY = {"open", "open_reader", "close", "transaction", "savepoint", "lock", "notify_due"}
FACE_ONLY = {"job_detail"}  # several reads at one moment, as one verb
HOT_WRITES = {  # committed on the event loop's thread when SQLite's write lock is free (call_hot)
    "record_message",
    "record_source_message",
    "record_orphan",
    "claim_due_deliveries",
    "finish_attempt",
    "finish_attempts",
}
READS = {
    "get_job",
    "find_job_by_token",
    "find_callback_target",
    "list_jobs",
    "job_detail",
    "get_inbound",
    "list_inbound",
    "inbound_body_size",
    "read_inbound_body",
    "get_event",
    "list_events",
    "iter_job_events",
    "find_source_by_token",
    "list_sources",
    "get_source",
    "get_subscriber",
    "list_subscribers",
    "get_delivery",
    "list_deliveries",
    "count_recoverable",
    "next_due_at",
    "operations_snapshot",
    "callback_token",
    "ping",
    "job_counts",
    "vendor_stats",
    "next_mirror_at",
    "session_revoked",
}


def _verbs(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


def _params(fn: Callable[..., Any]) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


class _Probe:
    """Stands in for the engine's store: records each verb called, answers ``()``."""

    def __init__(self) -> None:
        self.called: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., tuple[()]]:
        def verb(*args: object, **kwargs: object) -> tuple[()]:
            self.called.append(name)
            return ()

        return verb


class _RecordingRunner:
    """A runner that runs ``fn`` at once on a probe and remembers whether it came as a write or a read."""

    def __init__(self) -> None:
        self.probe = _Probe()
        self.kinds: list[str] = []

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    async def call(self, fn: Callable[[Any], T]) -> T:
        self.kinds.append("call")
        return fn(self.probe)

    async def call_hot(self, fn: Callable[[Any], T]) -> T:
        self.kinds.append("call_hot")
        return fn(self.probe)

    async def read(self, fn: Callable[[Any], T]) -> T:
        self.kinds.append("read")
        return fn(self.probe)


def test_the_face_has_every_engine_verb_with_the_same_parameters() -> None:
    """Store names each public SQLiteStore verb, with the same parameter names, kinds and defaults."""
    engine = _verbs(SQLiteStore) - ENGINE_ONLY
    assert _verbs(Store) - FACE_ONLY == engine
    for name in sorted(engine):
        assert _params(getattr(Store, name)) == _params(getattr(SQLiteStore, name)), name
        assert inspect.iscoroutinefunction(getattr(Store, name)), name
        assert "StoreUnavailable" in (getattr(Store, name).__doc__ or ""), name


def test_runner_store_sends_reads_to_read_and_writes_to_call() -> None:
    """Each RunnerStore verb calls the engine verb of its name, through ``read`` for pure reads only,
    ``call_hot`` for the short writes of the callback and delivery paths, ``call`` for the others."""
    for name in sorted(_verbs(Store)):
        runner = _RecordingRunner()
        verb = getattr(RunnerStore(runner), name)
        required = [
            p for p in inspect.signature(verb).parameters.values() if p.default is inspect.Parameter.empty
        ]
        args = [() for p in required if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        kwargs = {p.name: () for p in required if p.kind is inspect.Parameter.KEYWORD_ONLY}
        asyncio.run(verb(*args, **kwargs))
        expected = "read" if name in READS else "call_hot" if name in HOT_WRITES else "call"
        assert runner.kinds == [expected], name
        if name not in FACE_ONLY:
            assert runner.probe.called == [name], name


def test_job_detail_reads_job_inbound_and_events_together(tmp_path: Path) -> None:
    """Through a real runner, a job's detail holds the job, its stored message and its events."""
    box = SecretBox(Fernet.generate_key())
    path = tmp_path / "relay.db"
    runner = StoreRunner(SQLiteStore.open(path, box), reader=SQLiteStore.open_reader(path, box))
    runner.start()
    store = RunnerStore(runner)
    update = JobUpdate(
        JobState.SUCCEEDED, "success", "task_1", outputs=(Output("https://x/a.jpg", "image/jpeg"),)
    )

    async def main() -> dict[str, Any]:
        job = await store.create_job("apixo", {"input": {}}, reference="r1", token_hash="a" * 64)
        await store.mark_submitted(job.id, "task_1")
        await store.record_message(job.id, "callback", RawMessage({}, b"x" * 100, None), update)
        assert await store.ping()
        detail = await store.job_detail(job.id, body_prefix=10)
        assert detail.job.status is JobState.SUCCEEDED
        assert [i.body for i in detail.inbound] == [b"x" * 10]
        assert [e.type for e in detail.events] == ["job.queued", "job.succeeded"]
        assert [e.id for e in detail.events] == [e.id for e in await store.iter_job_events(job.id)]
        return detail.to_json()

    try:
        shown = asyncio.run(main())
    finally:
        runner.stop()
    assert shown["status"] == "succeeded"
    assert shown["inbound"][0]["body_truncated"] is True
    assert [e["type"] for e in shown["events"]] == ["job.queued", "job.succeeded"]
