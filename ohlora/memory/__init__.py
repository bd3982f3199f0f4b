"""Long-term memory, its models only: the memory writer (what to store), the encoder and the
two-stage recall (what to bring back), the running summary, and loading them by name. The
items themselves live in ohlora/store/."""
