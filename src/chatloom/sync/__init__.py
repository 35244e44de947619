"""Datasets that move: ``diff`` (by state, then turn by turn), ``sync`` (a three-way merge of two
datasets with the last sync as the base, conflicts kept, not overwritten), the sides they read."""
