"""Names no other test has used: endpoints, users, groups and scopes live on shared servers."""

from __future__ import annotations

import uuid

__all__ = ["unique"]


def unique(prefix: str) -> str:
    """``prefix`` with a random suffix: a name no other test (or earlier run) has used."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
