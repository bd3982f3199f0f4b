"""State: the SQLite database (schema as append-only migrations) and the tables over it:
memories, conversations, server accounts and guard events."""
