"""ohlora: train, evaluate and serve Oh-LoRA (오로라), a Korean persona chatbot with memory."""

__version__ = "0.1.0"
