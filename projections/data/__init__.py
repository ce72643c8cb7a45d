"""The boundaries the report\x27s maps draw (counties.json; its source and licence in README.md)."""
