"""Running DAGs: one trio nursery per run, every step in its own process group."""
