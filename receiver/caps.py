"""Caps on what one vendor message may make the relay do (issue 19, finding 6: a 2 KB callback listing
thousands of output URLs filled the mirror folder with 761 MB, and a 1 MiB one made a 17 MB job, an
8.6 MB event per delivery attempt and a 27 MB console page).

One check, applied wherever a parsed vendor message reaches a job: callbacks (job and source URLs,
reprocessing), status polls and submit answers. A message over the cap is stored with verdict
``invalid`` and the error below; the job is not changed, nothing is mirrored or emitted.

Example::

    check_output_count(update, settings)
    # PayloadError("the message lists 5000 outputs; RELAY_MAX_OUTPUTS_PER_JOB allows at most 16 per job; ...")
"""

from __future__ import annotations

from dispatch.errors import PayloadError
from dispatch.model import JobUpdate
from receiver.settings import Settings


def check_output_count(update: JobUpdate, settings: Settings) -> None:
    """Raise :class:`PayloadError` (a callback's 422, verdict ``invalid``) naming
    ``RELAY_MAX_OUTPUTS_PER_JOB`` when ``update`` lists more outputs than it allows (default 16)."""
    limit = settings.max_outputs_per_job
    count = len(update.outputs)
    if count > limit:
        raise PayloadError(
            f"the message lists {count} outputs; RELAY_MAX_OUTPUTS_PER_JOB allows at most {limit}"
            " per job; nothing applied",
            details={"outputs": count, "limit": limit},
        )
