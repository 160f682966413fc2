"""HTTP API v1 (DESIGN.md, "HTTP API"): one module per resource, assembled in :mod:`receiver.app`."""
