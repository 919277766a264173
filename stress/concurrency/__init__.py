"""Concurrent workers on shared keys, their histories and the checker that judges them (M1, M2)."""
