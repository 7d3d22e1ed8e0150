//! The metric store: recent points in memory for fast window queries, persisted in SQLite (WAL).
