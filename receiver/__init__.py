"""The edge of upscale-relay: HTTP app, vendor adapters, job submission, CLI and demo."""
