"""Long-term memory: a SQLite store of [key: value] items per user, encoders and retrieval."""
