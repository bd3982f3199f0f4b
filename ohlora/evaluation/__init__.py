"""Evaluation of every model (memory encoder and recall, writer, summarizer, guard, expression,
answers, conversations). Evaluators return dicts of metrics; they read ohlora/datasets/ and never
import training."""
