"""STUB: the pytest plugin (being written; see issue 3). Must import nothing heavy at load."""

from __future__ import annotations
