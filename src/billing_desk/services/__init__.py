"""The service layer: one module per noun, each call one unit of work returning plain data."""
