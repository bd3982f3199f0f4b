"""Decoding: the Generator protocol the chat engine uses and its engines (Hugging Face generate,
the fast restricted-head loop on LeanGemma3 with its native C step, llama.cpp), the prefix cache
and the choice of decode threads. Decoding reads model files; it never builds them."""
