"""Veil: private split speech recognition (speaker-anonymized on-device encoder prefixes)."""

__version__ = "0.1.0"
