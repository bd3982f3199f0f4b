"""HTTP serving: an OpenAI-compatible chat API, a per-user memory API and a web chat page."""
