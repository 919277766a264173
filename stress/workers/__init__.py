"""Worker processes every campaign uses: start and reap them, keep warm ones, run their jobs."""
