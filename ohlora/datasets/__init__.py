"""Datasets: the CSV/JSONL readers and splits that both training and evaluation use (SFT rows,
memory combinations and pairs, writer rows, summary rows, labelled CSVs)."""
