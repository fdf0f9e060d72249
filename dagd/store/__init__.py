"""Run history: SQLite (WAL, one writer, versioned schema) and the log files beside it."""
