"""The ethics guard: a calibrated classifier of risky messages and the escalation that follows it."""
