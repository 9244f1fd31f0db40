"""Headers on every API answer: security headers, and no caching unless a route says otherwise.

The table and the reasons for each value are in core/headers.py, shared with the hub.
"""

from __future__ import annotations

from core.headers import NO_STORE, SECURITY_HEADERS, install

__all__ = ["NO_STORE", "SECURITY_HEADERS", "install"]
