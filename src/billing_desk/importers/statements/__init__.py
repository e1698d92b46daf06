"""Bank statement importers, one module per format (see base.py for the protocol)."""
