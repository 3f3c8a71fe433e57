"""Storage: the database engine, tables, repositories and migrations."""
