"""Training: datasets (SFT pairs, memory combinations), LoRA SFT of the chat LLM, the memory encoder."""
