"""The ethics guard: a calibrated classifier of risky messages and the escalation that follows
it. The softmax head and sentence-encoder view it shares with the expression and key-intent heads
live in ohlora/memory/heads.py, its character n-grams in ohlora/memory/ngrams.py."""
