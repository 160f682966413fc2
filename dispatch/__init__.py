"""The core of upscale-relay: normalized job events, the store, signing and delivery.

Nothing here knows about vendors or Starlette; ``receiver`` imports ``dispatch``, never the reverse.
"""

__version__ = "0.1.0"
