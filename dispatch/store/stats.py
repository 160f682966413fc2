"""Store verbs for vendor analytics: per vendor, what became of its jobs, how fast, how the outcome
arrived, what went wrong and what it cost — SQL aggregates that both engines run over the indexes of
migration 008 (:func:`dispatch.store.ddl.analytics_sql`), written once against :class:`Conn`.

Percentiles are ``percentile_cont``'s (linear interpolation between the two closest ranks, at
``p * (n - 1)``), computed in integer arithmetic from the two rows each engine finds at those ranks
(``ORDER BY turnaround_ms LIMIT 2 OFFSET k`` over the turnaround index, or on Postgres
``ROW_NUMBER()`` over a small window; SQLite has no percentile function), so SQLite and Postgres give
the same numbers for the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dispatch.model import JobState, iso_ms
from dispatch.state import RELAY_DECIDED_VIA, RELAY_FAILURES
from dispatch.store.ddl import ANOMALY_FIELDS_SQL, ERROR_CODE_SQL, NOTABLE_VERDICTS_SQL
from dispatch.store.sql import Conn, Dialect

PERCENTILES = (("p50", 50), ("p95", 95), ("p99", 99))
"""The submit-to-terminal percentiles reported: name and percent."""
_NAMES = tuple(name for name, _ in PERCENTILES)

RANKED_AT_ONCE = 100_000
"""Up to this many jobs with a turnaround in a time window, Postgres ranks the window's rows in one
statement for the percentiles (its planner would sort the window again for each index read); beyond
it, without a window, and on SQLite (stepping through its index is faster there) they read the
turnaround index at each rank. Both give the same numbers."""

TOP_FAILURE_CODES = 10
"""How many failure codes each vendor lists (the most frequent; ties by code)."""

OUTCOME_PATHS = ("callback", "poll", "response", "submit", "timeout")
"""How a terminal state can arrive (``jobs.outcome_via``): the vendor called back (an operator's
``reprocess`` of a callback counts as one), a status poll found it, the submit's own answer carried it
(Artnex is synchronous), or the relay decided it: the submit failed for good (``submit``), the job's
deadline passed (``timeout``)."""

_SUBMIT_CODE = {  # the code before ": " in jobs.submit_error ("rate_limited: HTTP 429")
    "sqlite": "substr(submit_error, 1, instr(submit_error || ':', ':') - 1)",
    "postgres": "split_part(submit_error, ':', 1)",
}


@dataclass(frozen=True)
class CostTotal:
    """What a vendor billed for its jobs in one unit (:mod:`dispatch.costs`): ``CostTotal("usd", 0.12,
    10, 0.02, 0.03)``. ``jobs``: how many jobs were billed in that unit; ``resubmits``: of ``total``,
    what submits after a job's first cost; ``unreceived``: of ``total``, what was spent on results nobody
    received: vendor jobs a resubmit replaced, and every vendor job of a job the relay failed itself
    (``timeout``, ``vendor_timeout``, ``outcome_unknown``, ``no_output``) whose success never came."""

    unit: str
    total: float
    jobs: int
    resubmits: float = 0.0
    unreceived: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """``{"unit": "usd", "total": 0.12, "jobs": 10, "resubmits": 0.02, "unreceived": 0.03}``."""
        return {
            "unit": self.unit,
            "total": round(self.total, 6),
            "jobs": self.jobs,
            "resubmits": round(self.resubmits, 6),
            "unreceived": round(self.unreceived, 6),
        }


@dataclass(frozen=True)
class EstimateTotal:
    """What a vendor forecast its jobs would cost in one unit (Dreamina's ``forecastCost``), never added
    to what was billed: ``EstimateTotal("credits", 0.0, 3)``."""

    unit: str
    total: float
    jobs: int

    def to_json(self) -> dict[str, Any]:
        """``{"unit": "credits", "total": 0.0, "jobs": 3}``."""
        return {"unit": self.unit, "total": round(self.total, 6), "jobs": self.jobs}


@dataclass(frozen=True)
class VendorStats:
    """One vendor's figures over a time window.

    ``jobs``: jobs created in the window by state (``queued``, ``running``, ``succeeded``,
    ``failed``); ``failure_codes``: the top 10 error codes of its failed jobs as ``(code, count)``,
    most frequent first; ``turnaround_seconds``: ``p50``/``p95``/``p99`` of seconds from the submit
    being accepted to the terminal state being recorded (``None`` without terminal jobs);
    ``outcome_via``: terminal jobs by how the outcome arrived (:data:`OUTCOME_PATHS`);
    ``duplicate_callbacks``/``stale_callbacks``/``signature_rejections``: callbacks received in the
    window with verdict ``duplicate``, ``stale``, ``rejected``; ``submit_errors``: ``(code, count)`` of
    jobs whose submit failed for good (the job's error code), whose outcome is unknown
    (``outcome_unknown``) or that are waiting to retry a failed submit (the last attempt's code);
    ``cost``: what the vendor billed, per unit, with what of it went to resubmits and to results
    nobody received (:class:`CostTotal`); ``cost_estimate``: its forecasts per unit; ``submits``: submit
    attempts sent (``attempts``, every retry counted) and jobs submitted anew (``resubmits``).
    ``payload_anomalies``: ``(field, jobs)`` of the vendor fields its messages had to leave out
    (:class:`dispatch.model.Anomaly`), most jobs first.
    """

    vendor: str
    jobs: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in JobState})
    failure_codes: tuple[tuple[str, int], ...] = ()
    turnaround_seconds: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(_NAMES))
    outcome_via: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOME_PATHS, 0))
    duplicate_callbacks: int = 0
    stale_callbacks: int = 0
    signature_rejections: int = 0
    submit_errors: tuple[tuple[str, int], ...] = ()
    cost: tuple[CostTotal, ...] = ()
    cost_estimate: tuple[EstimateTotal, ...] = ()
    submits: dict[str, int] = field(default_factory=lambda: {"attempts": 0, "resubmits": 0})
    payload_anomalies: tuple[tuple[str, int], ...] = ()

    @property
    def total(self) -> int:
        """Jobs created in the window, whatever their state."""
        return sum(self.jobs.values())

    @property
    def success_rate(self) -> float | None:
        """``succeeded / (succeeded + failed)``, rounded to 4 places; ``None`` without terminal jobs."""
        done = self.jobs["succeeded"] + self.jobs["failed"]
        return round(self.jobs["succeeded"] / done, 4) if done else None

    @property
    def lost_callback_share(self) -> float | None:
        """Of the terminal states a vendor message brought (by callback or by poll), the share a poll
        found: callbacks that never came (``poll / (callback + poll)``, 4 places). ``None`` when
        neither brought one, as for a vendor that answers synchronously (Artnex)."""
        heard = self.outcome_via["callback"] + self.outcome_via["poll"]
        return round(self.outcome_via["poll"] / heard, 4) if heard else None

    def to_json(self) -> dict[str, Any]:
        """The API shape, e.g. ``{"vendor": "apixo", "jobs": {"queued": 0, "running": 1, "succeeded":
        9, "failed": 1, "total": 11}, "success_rate": 0.9, "failure_codes": [{"code": "timeout",
        "count": 1}], "time_to_terminal_seconds": {"p50": 31.2, "p95": 58.0, "p99": 59.9},
        "outcome_via": {"callback": 8, "poll": 2, "response": 0, "submit": 0, "timeout": 0},
        "lost_callback_share": 0.2, "duplicate_callbacks": 3, "stale_callbacks": 0,
        "signature_rejections": 0, "submit_errors": [], "cost": [{"unit": "usd", "total": 0.12, "jobs":
        10, "resubmits": 0.02, "unreceived": 0.03}], "cost_estimate": [], "submits": {"attempts": 13,
        "resubmits": 2}, "payload_anomalies": [{"field": "data.costTime", "count": 2}]}``."""
        return {
            "vendor": self.vendor,
            "jobs": {**self.jobs, "total": self.total},
            "success_rate": self.success_rate,
            "failure_codes": [{"code": code, "count": n} for code, n in self.failure_codes],
            "time_to_terminal_seconds": dict(self.turnaround_seconds),
            "outcome_via": dict(self.outcome_via),
            "lost_callback_share": self.lost_callback_share,
            "duplicate_callbacks": self.duplicate_callbacks,
            "stale_callbacks": self.stale_callbacks,
            "signature_rejections": self.signature_rejections,
            "submit_errors": [{"code": code, "count": n} for code, n in self.submit_errors],
            "cost": [c.to_json() for c in self.cost],
            "cost_estimate": [e.to_json() for e in self.cost_estimate],
            "submits": dict(self.submits),
            "payload_anomalies": [{"field": name, "count": n} for name, n in self.payload_anomalies],
        }


@dataclass(frozen=True)
class StatsReport:
    """Every vendor's :class:`VendorStats` for jobs created (and messages received) in
    [``since``, ``until``) (unix ms; ``None``: unbounded), vendors in name order."""

    since: int | None
    until: int | None
    vendors: tuple[VendorStats, ...]

    def to_json(self) -> dict[str, Any]:
        """``{"since": "2026-11-01T00:00:00.000Z" | null, "until": ... | null, "vendors": [...]}``
        (each vendor as :meth:`VendorStats.to_json`)."""
        return {
            "since": iso_ms(self.since),
            "until": iso_ms(self.until),
            "vendors": [v.to_json() for v in self.vendors],
        }


class StatsVerbs:
    """Vendor analytics. Mixed into :class:`dispatch.store.sqlite.SQLiteStore` and
    :class:`dispatch.store.postgres.PostgresStore`."""

    conn: Conn
    sql: Dialect

    def vendor_stats(self, *, since: int | None, until: int | None, vendor: str | None) -> StatsReport:
        """Per-vendor figures (see :class:`VendorStats`) for jobs created in [``since``, ``until``)
        (unix ms, either ``None``: unbounded) and inbound messages received in it, for one ``vendor``
        or every vendor that has any: four aggregate queries over indexes of migration 008 and one
        over the window's jobs (spend, :meth:`_spend`), then the percentiles (three index reads per
        vendor, or one ranking of a small window's rows), and the anomalous fields of the few jobs
        that have any (their partial index, migration 013).

        Example: ``vendor_stats(since=None, until=None, vendor="apixo")`` →
        ``StatsReport(None, None, (VendorStats("apixo", jobs={"queued": 0, ...}, ...),))``.
        Raises :class:`StoreUnavailable`.
        """
        found: dict[str, dict[str, Any]] = {}

        def entry(name: str) -> dict[str, Any]:
            return found.setdefault(name, _blank())

        where, args = _window("created_at", since, until, vendor)
        timed: dict[str, int] = {}
        for row in self.conn.execute(
            "SELECT vendor, status, outcome_via, COUNT(*) AS n, COUNT(turnaround_ms) AS timed FROM jobs"
            f" {where} GROUP BY vendor, status, outcome_via",
            args,
        ).fetchall():
            e, n = entry(row["vendor"]), int(row["n"])
            e["jobs"][row["status"]] += n
            timed[row["vendor"]] = timed.get(row["vendor"], 0) + int(row["timed"])
            if row["status"] in (JobState.SUCCEEDED, JobState.FAILED) and row["outcome_via"] is not None:
                via = "callback" if row["outcome_via"] == "reprocess" else row["outcome_via"]
                e["outcome_via"][via] = e["outcome_via"].get(via, 0) + n
        code = ERROR_CODE_SQL["sqlite" if self.sql.name == "sqlite" else "postgres"]
        self._spend(where, args, code, entry)

        failures: dict[str, dict[str, int]] = {}
        submits: dict[str, dict[str, int]] = {}
        failed = f"{where} AND status = 'failed'" if where else "WHERE status = 'failed'"
        for row in self.conn.execute(
            f"SELECT vendor, outcome_via, {code} AS code, COUNT(*) AS n FROM jobs {failed} GROUP BY 1, 2, 3",
            args,
        ).fetchall():
            name, label = row["vendor"], row["code"] or "unknown"
            _add(failures, name, label, int(row["n"]))
            if row["outcome_via"] == "submit":
                _add(submits, name, label, int(row["n"]))
        # pending submits are few (jobs waiting to retry one): all of them are read through the
        # submit_at index, and the window and vendor only decide which are counted
        counted = where.removeprefix("WHERE ") or "1 = 1"
        for row in self.conn.execute(
            f"SELECT {_SUBMIT_CODE[self.sql.name]} AS code, vendor, SUM(CASE WHEN {counted} THEN 1 ELSE 0 END)"
            " AS n FROM jobs WHERE submit_at IS NOT NULL AND submit_error IS NOT NULL GROUP BY 1, 2",
            args,
        ).fetchall():
            if row["n"]:
                _add(submits, row["vendor"], row["code"] or "unknown", int(row["n"]))

        inbound_where, inbound_args = _window("received_at", since, until, vendor)
        verdicts = NOTABLE_VERDICTS_SQL
        inbound_where = f"{inbound_where} AND {verdicts}" if inbound_where else f"WHERE {verdicts}"
        for row in self.conn.execute(
            f"SELECT vendor, verdict, kind, COUNT(*) AS n FROM inbound {inbound_where} GROUP BY vendor, verdict, kind",
            inbound_args,
        ).fetchall():
            e, n = entry(row["vendor"]), int(row["n"])
            if row["verdict"] == "outcome_unknown":
                _add(submits, row["vendor"], "outcome_unknown", n)
            elif row["kind"] == "callback":
                key = {"duplicate": "duplicate_callbacks", "stale": "stale_callbacks"}.get(
                    row["verdict"], "signature_rejections"
                )
                e[key] += n

        anomalous = f"{where} AND anomalies IS NOT NULL" if where else "WHERE anomalies IS NOT NULL"
        anomalies: dict[str, dict[str, int]] = {}
        listed = ANOMALY_FIELDS_SQL["sqlite" if self.sql.name == "sqlite" else "postgres"]
        for row in self.conn.execute(listed.format(where=anomalous), args).fetchall():
            _add(anomalies, row["vendor"], row["field"] or "", int(row["n"]))
        for name, fields in anomalies.items():
            entry(name)["payload_anomalies"] = _top(fields)

        for name, codes in failures.items():
            entry(name)["failure_codes"] = _top(codes)[:TOP_FAILURE_CODES]
        for name, codes in submits.items():
            entry(name)["submit_errors"] = _top(codes)
        window, window_args = _window("created_at", since, until, None)
        for name, seconds in self._percentiles(window, window_args, timed, vendor).items():
            entry(name)["turnaround_seconds"] = seconds
        vendors = tuple(VendorStats(name, **found[name]) for name in sorted(found))
        return StatsReport(since, until, vendors)

    def _spend(self, where: str, args: Sequence[Any], code: str, entry: Any) -> None:
        """Each vendor's ``cost``, ``cost_estimate`` and ``submits`` (see :class:`VendorStats`) into
        ``entry(vendor)``, from one aggregate over the window's jobs: what was billed (``cost_amount``),
        of it on resubmits (``cost_resubmits``) and on results nobody received (``cost_superseded``, or
        all of a job the relay failed itself, :func:`dispatch.state.failed_by_relay`), the estimates,
        the submit attempts and resubmits."""
        failures = ", ".join("?" for _ in RELAY_FAILURES)
        decided = ", ".join("?" for _ in RELAY_DECIDED_VIA)
        relay_failed = f"status = 'failed' AND outcome_via IN ({decided}) AND {code} IN ({failures})"
        spend: dict[str, dict[str, list[float]]] = {}
        estimates: dict[str, dict[str, list[float]]] = {}
        for row in self.conn.execute(
            "SELECT vendor, cost_unit, estimate_unit, SUM(submit_attempts) AS attempts,"
            " SUM(resubmits) AS resubmits, SUM(cost_amount) AS cost, COUNT(cost_amount) AS costed,"
            " SUM(COALESCE(cost_resubmits, 0)) AS on_resubmits,"
            f" SUM(CASE WHEN {relay_failed} THEN COALESCE(cost_amount, 0) ELSE COALESCE(cost_superseded, 0)"
            " END) AS unreceived, SUM(estimate_amount) AS estimate, COUNT(estimate_amount) AS estimated"
            f" FROM jobs {where} GROUP BY vendor, cost_unit, estimate_unit",
            (*RELAY_DECIDED_VIA, *sorted(RELAY_FAILURES), *args),
        ).fetchall():
            e = entry(row["vendor"])
            e["submits"]["attempts"] += int(row["attempts"] or 0)
            e["submits"]["resubmits"] += int(row["resubmits"] or 0)
            if row["cost_unit"] is not None and row["costed"]:
                total = spend.setdefault(row["vendor"], {}).setdefault(row["cost_unit"], [0.0, 0, 0.0, 0.0])
                for index, value in enumerate(
                    (row["cost"], row["costed"], row["on_resubmits"], row["unreceived"])
                ):
                    total[index] += float(value or 0)
            if row["estimate_unit"] is not None and row["estimated"]:
                guess = estimates.setdefault(row["vendor"], {}).setdefault(row["estimate_unit"], [0.0, 0])
                guess[0] += float(row["estimate"] or 0)
                guess[1] += int(row["estimated"])
        for name, units in spend.items():
            entry(name)["cost"] = tuple(
                CostTotal(unit, t, int(n), r, u) for unit, (t, n, r, u) in sorted(units.items())
            )
        for name, units in estimates.items():
            entry(name)["cost_estimate"] = tuple(
                EstimateTotal(unit, t, int(n)) for unit, (t, n) in sorted(units.items())
            )

    def _percentiles(
        self, where: str, args: Sequence[Any], counts: dict[str, int], vendor: str | None
    ) -> dict[str, dict[str, float | None]]:
        """Each vendor's :data:`PERCENTILES` of ``turnaround_ms`` in seconds (3 places); ``counts``
        is ``n`` per vendor (jobs with a turnaround in the window; ``where`` without the vendor).
        For each ``p`` the two rows at ranks ``floor(p * (n - 1)) + 1`` and ``+ 2`` are interpolated
        between as ``percentile_cont`` does. They are read from the turnaround index (from its nearer
        end: ``LIMIT 2 OFFSET k``), or on Postgres, for a time window of at most
        :data:`RANKED_AT_ONCE` jobs, all at once from the window's rows ranked by ``ROW_NUMBER()``.
        Rows written between the count and these reads only shift a percentile by a rank (``None``
        when its rows went away)."""
        points = {
            name: [(label, *divmod((n - 1) * percent, 100)) for label, percent in PERCENTILES]
            for name, n in counts.items()
            if n > 0
        }
        timed = f"{where} AND vendor = ?" if where else "WHERE vendor = ?"
        timed += " AND turnaround_ms IS NOT NULL"
        ranked: dict[tuple[str, int], int] | None = None
        if where and self.sql.name == "postgres" and sum(counts.values()) <= RANKED_AT_ONCE:
            ranked = self._ranked(where, args, points, vendor)
        out: dict[str, dict[str, float | None]] = {}
        for name, wanted in points.items():
            n = counts[name]
            seconds: dict[str, float | None] = {}
            for label, low, rest in wanted:  # ranks low + 1 and low + 2 (1-based)
                if ranked is not None:
                    found = [ranked[(name, r)] for r in (low + 1, min(low + 2, n)) if (name, r) in ranked]
                elif low < n // 2:
                    found = self._turnarounds(timed, (*args, name, 2, low), "")
                else:  # from the top: fewer rows to step over for p95, p99
                    limit = 2 if low + 2 <= n else 1
                    found = self._turnarounds(timed, (*args, name, limit, max(0, n - low - 2)), " DESC")[::-1]
                if not found:
                    seconds[label] = None
                    continue
                below, above = found[0], found[-1]
                seconds[label] = round((below + (above - below) * rest / 100) / 1000, 3)
            out[name] = seconds
        return out

    def _turnarounds(self, where: str, args: Sequence[Any], order: str) -> list[int]:
        """``LIMIT ? OFFSET ?`` turnarounds of one vendor in ``order`` (``""`` or ``" DESC"``)."""
        rows = self.conn.execute(
            f"SELECT turnaround_ms FROM jobs {where} ORDER BY turnaround_ms{order} LIMIT ? OFFSET ?", args
        ).fetchall()
        return [int(row["turnaround_ms"]) for row in rows]

    def _ranked(
        self,
        where: str,
        args: Sequence[Any],
        points: dict[str, list[tuple[str, int, int]]],
        vendor: str | None,
    ) -> dict[tuple[str, int], int]:
        """The turnarounds at the ranks ``points`` need, per ``(vendor, rank)``, from one statement
        ranking each vendor's turnarounds in the window (only ``vendor``'s when given)."""
        if vendor is not None:
            where, args = f"{where} AND vendor = ?", (*args, vendor)
        ranks = sorted({low + step for wanted in points.values() for _, low, _ in wanted for step in (1, 2)})
        if not ranks:
            return {}
        marks = ", ".join("?" for _ in ranks)
        rows = self.conn.execute(
            "SELECT vendor, rn, turnaround_ms FROM (SELECT vendor, turnaround_ms, ROW_NUMBER() OVER"
            f" (PARTITION BY vendor ORDER BY turnaround_ms) AS rn FROM jobs {where}"
            f" AND turnaround_ms IS NOT NULL) ranked WHERE rn IN ({marks})",
            (*args, *ranks),
        ).fetchall()
        return {(row["vendor"], int(row["rn"])): int(row["turnaround_ms"]) for row in rows}


def _blank() -> dict[str, Any]:
    return {
        "jobs": {s.value: 0 for s in JobState},
        "outcome_via": dict.fromkeys(OUTCOME_PATHS, 0),
        "duplicate_callbacks": 0,
        "stale_callbacks": 0,
        "signature_rejections": 0,
        "submits": {"attempts": 0, "resubmits": 0},
    }


def _add(table: dict[str, dict[str, int]], vendor: str, code: str, n: int) -> None:
    codes = table.setdefault(vendor, {})
    codes[code] = codes.get(code, 0) + n


def _top(codes: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """``(code, count)`` most frequent first, ties by code."""
    return tuple(sorted(codes.items(), key=lambda item: (-item[1], item[0])))


def _window(column: str, since: int | None, until: int | None, vendor: str | None) -> tuple[str, list[Any]]:
    """``WHERE`` for ``column`` in [since, until) and the vendor, with its arguments (``""`` for none)."""
    clauses, args = [], []
    for clause, value in ((f"{column} >= ?", since), (f"{column} < ?", until), ("vendor = ?", vendor)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args
