"""I/O fault campaigns: make the k-th file operation fail and judge what the store did (F2)."""
