"""Evaluation: memory-encoder metrics, answer-quality checks. Evaluators return dicts of metrics."""
