"""The event loop the relay's long-running commands run on: uvloop where it is installed, as
``upscale-relay serve`` gets from uvicorn (``loop="auto"``), else asyncio's own.

uvloop (a dependency of ``uvicorn[standard]`` on Linux and macOS) runs the delivery worker's
HTTP requests and store hand-offs with a little less CPU per delivery than asyncio's selector loop
(bench/README.md, "What the later session's changes bought": near run-to-run noise).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """``uvloop.new_event_loop`` when uvloop imports, else ``asyncio.new_event_loop``."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, or installed without uvicorn[standard]
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop from :func:`loop_factory` and return its result
    (exceptions propagate), like ``asyncio.run``. Example: ``run_loop(dispatcher.run(stop))``."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
