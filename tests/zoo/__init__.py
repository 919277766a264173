"""Deliberately broken stores, one real-world defect each, importable as ``zoo.<module>:<factory>``.

Workers find them when the ``tests`` folder is on ``PYTHONPATH`` (the tests that use them set it).
"""
