"""Export Oh-LoRA for other runtimes: a merged GGUF for llama.cpp / Ollama with its Modelfile.

`gguf.py` merges the chat adapter into the base weights and runs llama.cpp's own converter;
`converter.py` finds that converter; `modelfile.py` writes Ollama's Modelfile from the adapter's
PromptFormat; `cli.py` is `ohlora export gguf`.
"""
