"""Crash campaigns: kill workers at numbered crash points and at random times (D1, D2, D4, D5)."""
