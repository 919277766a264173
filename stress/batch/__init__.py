"""B1, batch saves: kills at the crash points inside ``save_many``, power cuts around it."""
