"""swarmd.storage: durable state through aiosqlite (WAL, one writer)."""
