"""Real ``upscale-relay`` processes for acceptance tests, started as a user would start them.

``RelayProcess`` runs the console script with an environment built from ``os.environ`` plus
``RELAY_*`` values, sends its output to files (never an unread pipe), and is always reaped::

    env = relay_environ(relay_database, api_token=API_TOKEN)   # a URL (conftest.py), or a SQLite file Path
    with RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path) as proc:
        wait_http_ok(proc, f"http://127.0.0.1:{port}/healthz")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(15) == 0
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from dispatch.model import JobState, JobUpdate, Output
from dispatch.store.records import RawMessage
from fixtures.harness import wait_until
from receiver.database import SyncStore, migrate, open_store
from receiver.settings import load_settings
from tests.relay_env import TEST_SECRET_KEY

#: The console script installed beside the interpreter running the tests (``.venv/bin/upscale-relay``).
RELAY_BIN = Path(sys.executable).parent / "upscale-relay"


def database_url(db: Path | str) -> str:
    """``sqlite:///<db>`` for a database file; a URL (``sqlite:///…``, ``postgresql://…``, e.g. from the
    ``relay_database`` fixture) as it is."""
    return db if isinstance(db, str) else f"sqlite:///{db}"


def is_postgres(db: Path | str) -> bool:
    """True when ``db`` names a Postgres database."""
    return database_url(db).startswith("postgresql://")


def relay_environ(db: Path | str, **values: object) -> dict[str, str]:
    """``os.environ`` without any ``RELAY_*`` or ``PORT``, plus ``RELAY_DATABASE_URL`` for ``db`` (a
    SQLite file or a database URL) and ``RELAY_<NAME>`` for each keyword (``lease_seconds=2`` →
    ``RELAY_LEASE_SECONDS=2``). On Postgres ``RELAY_SECRET_KEY`` is the suite's fixed test key unless
    given: every process on one database must share it (on SQLite the key file beside it is used)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_") and k != "PORT"}
    env["RELAY_DATABASE_URL"] = database_url(db)
    if is_postgres(db):
        env["RELAY_SECRET_KEY"] = TEST_SECRET_KEY
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in values.items():
        env[f"RELAY_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class ProcessDied(AssertionError):
    """The process exited while the test still needed it."""


class RelayProcess:
    """One ``upscale-relay`` subprocess; stdout and stderr go to ``<log_dir>/<name>.out|.err``."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.out_path = log_dir / f"{name}.out"
        self.err_path = log_dir / f"{name}.err"
        self._out: IO[bytes] = self.out_path.open("wb")
        self._err: IO[bytes] = self.err_path.open("wb")
        try:
            self.popen = subprocess.Popen(
                [str(RELAY_BIN), *args],
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=self._err,
                env=dict(env),
                cwd=log_dir,
            )
        except BaseException:
            self._out.close()
            self._err.close()
            raise

    @classmethod
    def start(cls, name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path) -> RelayProcess:
        """Start ``upscale-relay <args>``; use the result as a context manager so it is always reaped."""
        return cls(name, args, env, log_dir)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout(self) -> str:
        """Everything the process printed on stdout so far."""
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        """Everything the process printed on stderr so far."""
        return self.err_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        """Raise :class:`ProcessDied` (with its stderr) when the process has exited."""
        if not self.alive():
            raise ProcessDied(
                f"{self.name} exited with {self.popen.returncode}; stderr:\n{self.stderr()[-4000:]}"
            )

    def send_signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """The exit status once the process ends (``-N`` for signal N); ``AssertionError`` after
        ``timeout`` seconds (the process is then killed)."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s; stderr:\n{self.stderr()[-4000:]}"
            ) from None

    def close(self) -> None:
        """SIGKILL the process if it still runs, reap it, close the log files."""
        try:
            if self.popen.poll() is None:
                self.popen.kill()
            self.popen.wait(10)
        finally:
            self._out.close()
            self._err.close()

    def __enter__(self) -> RelayProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def wait_while_alive(
    proc: RelayProcess,
    predicate: Callable[[], object],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition not met",
) -> None:
    """:func:`fixtures.harness.wait_until` that fails at once (with its stderr) if ``proc`` exits."""

    def check() -> object:
        proc.check_alive()
        return predicate()

    wait_until(check, timeout=timeout, interval=interval, message=message)


def wait_http_ok(proc: RelayProcess, url: str, timeout: float = 20.0) -> None:
    """Poll ``GET url`` until it answers 200, failing early (with stderr) if ``proc`` exits."""

    def ready() -> bool:
        proc.check_alive()
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout=timeout, interval=0.05, message=f"{url} never answered 200")


def run_cli(env: Mapping[str, str], *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``upscale-relay <args>`` to completion (output captured and read); asserts exit 0."""
    done = subprocess.run(
        [str(RELAY_BIN), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, f"upscale-relay {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
    return done


def open_test_store(db: Path | str) -> SyncStore:
    """The relay's store on ``db`` through the library, with the key the processes use (the key file
    beside a SQLite file; the test key on Postgres, whose tables are created first if missing)."""
    if not is_postgres(db):
        return open_store(load_settings(database_url=database_url(db)))
    settings = load_settings(database_url=database_url(db), secret_key=TEST_SECRET_KEY)
    migrate(settings)
    return open_store(settings)


def seed_succeeded_jobs(store: SyncStore, count: int, vendor: str = "apixo") -> list[str]:
    """Create ``count`` jobs that succeeded through a callback, in one transaction; returns the ids
    of their ``job.succeeded`` events (each already fanned out to the matching subscribers)."""
    event_ids: list[str] = []
    with store.transaction():
        for n in range(count):
            job = store.create_job(vendor, {"input": {}}, reference=f"seed-{n}", token_hash=None)
            result = store.record_message(
                job.id,
                "callback",
                RawMessage({}, b"{}"),
                JobUpdate(JobState.SUCCEEDED, "success", outputs=(Output("https://cdn.example.com/a.png"),)),
            )
            event_ids.extend(result.event_ids)
    assert len(event_ids) == count, f"seeding produced {len(event_ids)} events for {count} jobs"
    return event_ids
