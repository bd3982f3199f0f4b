"""Allows `python -m ohlora ...`."""

from ohlora.cli import main

main()
