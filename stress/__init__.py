"""The stress suite: multi-process workers, crash injection, power-loss model, history checker."""

from __future__ import annotations

__all__: list[str] = []
