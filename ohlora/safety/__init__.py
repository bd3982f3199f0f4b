"""The ethics guard: a calibrated classifier of risky messages and the escalation that follows
it; heads.py holds the softmax head and sentence-encoder view it shares with the expression head."""
