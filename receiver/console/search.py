"""The Jobs page's query: filters (vendor, state, reference, outcome path, time) and a search box (job id, vendor
job id or reference), with cursor pagination, over the store's ``list_jobs`` and ``get_job`` verbs.

Vendor and state filter in the store; the time bounds use its keyset (``until`` starts the scan,
``since`` stops it); reference, outcome path and search terms are matched while scanning, at most
:data:`SCAN_BUDGET` jobs per page, so a page of a rare reference may come with a cursor to scan on.

Example::

    page = await find_jobs(store, JobQuery(vendor="apixo", reference="demo-6"))
    page.jobs       # [Job(id="job_…", reference="demo-6", status=failed, ...)]
    page.cursor     # None on the last page, else the value of ?cursor= for the next one
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatch.errors import NotFound
from dispatch.store.face import Store
from dispatch.store.records import Job
from dispatch.store.sql import page_key

PAGE_SIZE = 50
SCAN_BUDGET = 5000
"""Most jobs one page request reads while matching a reference or a search term."""
_BATCH = 500


@dataclass(frozen=True)
class JobQuery:
    """The Jobs page's filters; times are unix ms, ``after`` a decoded cursor."""

    vendor: str | None = None
    status: str | None = None
    reference: str | None = None
    q: str | None = None
    via: str | None = None
    since: int | None = None
    until: int | None = None
    after: tuple[int, str] | None = None

    @property
    def scans(self) -> bool:
        """True when jobs are matched while scanning (reference, search term, outcome path or ``since``)."""
        return bool(self.reference or self.q or self.via or self.since is not None)

    def matches(self, job: Job) -> bool:
        """Whether ``job`` passes the reference and outcome-path (``via``: how its terminal state
        arrived, e.g. ``poll`` for a lost callback) filters and the search term (case-insensitive
        substring of the job id, vendor job id, earlier vendor job ids or reference)."""
        if self.reference and job.reference != self.reference:
            return False
        if self.via and job.outcome_via != self.via:
            return False
        if self.q:
            needle = self.q.lower()
            haystack = [job.id, job.vendor_job_id or "", job.reference or "", *job.previous_vendor_job_ids]
            return any(needle in value.lower() for value in haystack)
        return True


@dataclass(frozen=True)
class JobPage:
    """One page of jobs, the cursor of the next (``None``: last page) and how many were read."""

    jobs: tuple[Job, ...]
    cursor: str | None
    scanned: int


async def find_jobs(store: Store, query: JobQuery, *, limit: int = PAGE_SIZE) -> JobPage:
    """The page of jobs ``query`` selects, newest first. A search term that is a job id finds that
    job directly. Raises :class:`StoreUnavailable`."""
    if query.q and query.after is None and query.q.startswith("job_"):
        try:
            job = await store.get_job(query.q)
        except NotFound:
            pass
        else:
            return JobPage((job,), None, 1)
    after = query.after
    if after is None and query.until is not None:
        after = (query.until, "")  # created_at < until
    if not query.scans:
        rows = await store.list_jobs(vendor=query.vendor, status=query.status, limit=limit + 1, after=after)
        more = len(rows) > limit
        shown = rows[:limit]
        cursor = page_key(shown[-1].created_at, shown[-1].id) if more and shown else None
        return JobPage(tuple(shown), cursor, len(rows))
    found: list[Job] = []
    scanned = 0
    last: Job | None = None
    while scanned < SCAN_BUDGET:
        rows = await store.list_jobs(vendor=query.vendor, status=query.status, limit=_BATCH, after=after)
        for job in rows:
            if query.since is not None and job.created_at < query.since:
                return JobPage(tuple(found[:limit]), _cursor(found, limit), scanned)
            scanned += 1
            last = job
            if query.matches(job):
                found.append(job)
                if len(found) > limit:
                    return JobPage(tuple(found[:limit]), _cursor(found, limit), scanned)
        if len(rows) < _BATCH:
            return JobPage(tuple(found), None, scanned)
        after = (rows[-1].created_at, rows[-1].id)
    # budget spent: go on from the last job read
    assert last is not None
    return JobPage(tuple(found), page_key(last.created_at, last.id), scanned)


def _cursor(found: list[Job], limit: int) -> str | None:
    if len(found) <= limit:
        return None
    job = found[limit - 1]
    return page_key(job.created_at, job.id)
