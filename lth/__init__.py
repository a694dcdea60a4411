"""lth: lottery-ticket experiments (Frankle & Carbin; Zhou et al.) as a library, a CLI and a DVC pipeline."""

__version__ = "0.1.0"
