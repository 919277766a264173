"""Deliberately broken offset stores: one real-world defect each (see defects.py)."""
