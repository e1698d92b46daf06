"""billing-desk: back-office billing for a facility transportation service."""

__version__ = "0.1.0"
