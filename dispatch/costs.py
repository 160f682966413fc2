"""What a job cost, as its vendor bills it: one :class:`Charge` per vendor job (per accepted submit),
and the totals vendor analytics read (:mod:`dispatch.store.stats`).

A job can make several vendor jobs: APIXO bills "per submitted image at $0.01 / image" (seed 003), so a
job resubmitted after a transient failure is billed twice. Each vendor message that reports a cost
(:attr:`dispatch.model.JobUpdate.cost`) records it against the vendor job it is about, the latest
report replacing an earlier one of the same kind (Apiframe's ``creditCost`` drops to 0 when a failed
job is refunded); a late or superseded message records its cost all the same. ``billed`` charges are
what the vendor bills (APIXO's price per submit, Artnex ``credits_used``, Apiframe ``creditCost``);
``estimate`` charges are forecasts (Dreamina's ``forecastCost``), never added to what was billed.

Example: a job submitted to APIXO as ``task_1``, failed ``Timeout``, resubmitted as ``task_2``::

    (Charge("task_1", 1, "billed", 0.01, "usd"), Charge("task_2", 2, "billed", 0.01, "usd"))
    → cost 0.02 usd, of which 0.01 on resubmits and 0.01 on a superseded vendor job
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dispatch.model import Cost

BILLED = "billed"
ESTIMATE = "estimate"


@dataclass(frozen=True)
class Charge:
    """What one vendor job of a job cost: ``vendor_job_id`` (``None`` while unknown), ``submit`` (which
    accepted submit made it: 1 the first, 2 and on resubmits), ``kind`` (``billed`` or ``estimate``),
    ``amount`` in ``unit`` (``usd``, ``credits``). Example: ``Charge("task_2", 2, "billed", 0.01, "usd")``."""

    vendor_job_id: str | None
    submit: int
    kind: str
    amount: float
    unit: str

    def to_json(self) -> dict[str, Any]:
        """``{"vendor_job_id", "submit", "kind", "amount", "unit"}``."""
        return {
            "vendor_job_id": self.vendor_job_id,
            "submit": self.submit,
            "kind": self.kind,
            "amount": self.amount,
            "unit": self.unit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Charge:
        """The inverse of :meth:`to_json`. Raises ``KeyError`` for a missing field."""
        return cls(
            data["vendor_job_id"], int(data["submit"]), data["kind"], float(data["amount"]), data["unit"]
        )


def submit_number(
    vendor_job_id: str | None, current: str | None, previous: tuple[str, ...], resubmits: int
) -> int:
    """Which accepted submit of a job made ``vendor_job_id``: its place among the job's superseded vendor
    jobs (``previous``, oldest first), else the current submit (``resubmits + 1``). Example:
    ``submit_number("task_1", "task_2", ("task_1",), 1)`` → ``1``; ``("task_2", ...)`` → ``2``."""
    if vendor_job_id is not None and vendor_job_id != current and vendor_job_id in previous:
        return previous.index(vendor_job_id) + 1
    return resubmits + 1


def with_charge(charges: tuple[Charge, ...], charge: Charge) -> tuple[Charge, ...] | None:
    """``charges`` with ``charge`` recorded: replacing the one of the same vendor job and kind, else
    added; ``None`` when nothing changes (the same report again)."""
    for index, old in enumerate(charges):
        if (old.vendor_job_id, old.kind) == (charge.vendor_job_id, charge.kind):
            if old == charge:
                return None
            return (*charges[:index], charge, *charges[index + 1 :])
    return (*charges, charge)


def charge_of(cost: Cost, vendor_job_id: str | None, submit: int) -> Charge:
    """The :class:`Charge` a vendor's reported ``cost`` makes for one vendor job."""
    return Charge(vendor_job_id, submit, ESTIMATE if cost.estimate else BILLED, cost.amount, cost.unit)


def totals(charges: tuple[Charge, ...], resubmits: int) -> dict[str, Any]:
    """The job columns vendor analytics read, from its charges and how many resubmits it had:
    ``cost_amount``/``cost_unit`` (what was billed, in the unit of the first billed charge; charges in
    another unit are kept but not added), ``cost_resubmits`` (billed for submits after the first),
    ``cost_superseded`` (billed for vendor jobs a resubmit replaced: results nobody receives) and
    ``estimate_amount``/``estimate_unit`` (forecasts). Example, the module docstring's job:
    ``{"cost_amount": 0.02, "cost_unit": "usd", "cost_resubmits": 0.01, "cost_superseded": 0.01,
    "estimate_amount": None, "estimate_unit": None}``."""
    billed = [c for c in charges if c.kind == BILLED]
    estimates = [c for c in charges if c.kind == ESTIMATE]
    unit = billed[0].unit if billed else None
    same = [c for c in billed if c.unit == unit]
    estimate_unit = estimates[0].unit if estimates else None
    return {
        "cost_amount": _sum(c.amount for c in same) if same else None,
        "cost_unit": unit,
        "cost_resubmits": _sum(c.amount for c in same if c.submit > 1) if same else None,
        "cost_superseded": _sum(c.amount for c in same if c.submit <= resubmits) if same else None,
        "estimate_amount": _sum(c.amount for c in estimates if c.unit == estimate_unit)
        if estimates
        else None,
        "estimate_unit": estimate_unit,
    }


def _sum(amounts: Iterable[float]) -> float:
    """A sum rounded to 9 places: ``0.01 + 0.01 + 0.01`` is ``0.03``, not ``0.030000000000000002``."""
    return round(sum(amounts, 0.0), 9)
