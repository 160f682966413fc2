"""The two tiny servers the issue-12 benchmarks run, each in its own process under uvicorn.

``bare``: the ingest baseline. Any ``POST`` path reads the body, parses it as JSON and answers a
small JSON 200, under the same uvicorn settings as ``upscale-relay serve`` (httptools, log level
info with the access log on, the relay's default connection limit and keep-alive).

``sink``: the subscriber. ``POST /hooks/{name}`` → 200 ``{"ok":true}``, keeping each body and its
arrival time (no access log, nothing parsed while it receives); ``GET /_stats`` → received count and
the first/last arrival (``time.time()``); ``GET /_arrivals`` → the earliest arrival per event's
``data.vendor_job_id``; ``POST /_reset`` forgets everything.

    python bench/apps.py bare --port 8001
    python bench/apps.py sink --port 8002
"""

from __future__ import annotations

import argparse
import json
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def bare_app() -> Starlette:
    async def callback(request: Request) -> JSONResponse:
        json.loads(await request.body())
        return JSONResponse({"ok": True, "verdict": "bare"})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/{path:path}", callback, methods=["POST"]),
        ]
    )


def sink_app() -> Starlette:
    arrivals: list[tuple[float, bytes]] = []

    async def hook(request: Request) -> Response:
        body = await request.body()
        arrivals.append((time.time(), body))
        return Response(b'{"ok":true}', 200, media_type="application/json")

    async def stats(request: Request) -> JSONResponse:
        first = arrivals[0][0] if arrivals else None
        last = arrivals[-1][0] if arrivals else None
        return JSONResponse({"received": len(arrivals), "first": first, "last": last})

    async def by_job(request: Request) -> JSONResponse:
        earliest: dict[str, float] = {}
        for at, body in arrivals:
            task_id = str(json.loads(body)["data"]["vendor_job_id"])
            earliest[task_id] = min(at, earliest.get(task_id, at))
        return JSONResponse(earliest)

    async def reset(request: Request) -> JSONResponse:
        arrivals.clear()
        return JSONResponse({"received": 0})

    return Starlette(
        routes=[
            Route("/hooks/{name}", hook, methods=["POST"]),
            Route("/_stats", stats, methods=["GET"]),
            Route("/_arrivals", by_job, methods=["GET"]),
            Route("/_reset", reset, methods=["POST"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("app", choices=["bare", "sink"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.app == "bare":
        uvicorn.run(
            bare_app(),
            host="127.0.0.1",
            port=args.port,
            http="httptools",
            log_level="info",
            limit_concurrency=4096,
            timeout_keep_alive=5,
        )
    else:
        uvicorn.run(sink_app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
