"""Training: LoRA SFT of the chat LLM, the memory encoder and its recall stage, the memory writer,
the summarizer, and the guard and expression heads; each trainer's config dataclass sits beside
it. Training reads ohlora/datasets/ and may call ohlora/evaluation/; nothing chat-time imports it."""
