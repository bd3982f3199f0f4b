"""C sources of the native decode step (built by ohlora/native_decoder.py)."""
