"""Vendor inputs carrying fake-vendor scenario markers, and the fake's submits for one of them: shared by
the scenario matrix, the altshape tests and the vendor-error tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

from receiver.fakes import dreamina_source_job, ltx_source_job, source_image
from receiver.fakes.state import SubmitRecord
from tests.relay_env import RelayEnv

FAKE_NAME = {"ltxstudio": "ltx"}  # the fake logs LTX Studio submits and jobs as "ltx"


def make_params(vendor: str, marker: str) -> tuple[dict[str, Any], str]:
    """``(params, input)``: a unique, otherwise valid input for ``vendor`` carrying ``marker``
    (``""`` for none), e.g. ``({"input": {"image_urls": ["https://…/source-fail-1a2b3c4d.jpg"]}}, "https://…")``."""
    if vendor == "ltxstudio":
        src = ltx_source_job(marker)
        return {"jobId": src}, src
    if vendor == "dreamina":
        src = dreamina_source_job(marker)
        return {"jobid": src}, src
    image = source_image(f"{marker} {uuid.uuid4().hex[:8]}".strip())  # hex never contains a marker
    if vendor == "apiframe":
        return {"model": "topaz-image-upscale", "topazUpscaleParams": {"image": image}}, image
    if vendor == "apixo":
        return {"input": {"image_urls": [image]}}, image
    return {"image": image}, image


def submits_for(env: RelayEnv, vendor: str, src: str) -> list[SubmitRecord]:
    """The submits the fake received for input ``src``, oldest first."""
    return [s for s in env.fake.submits(FAKE_NAME.get(vendor, vendor)) if src in json.dumps(s.body)]
