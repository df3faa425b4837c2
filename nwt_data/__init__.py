"""nwt_data: turn talking-person footage into NWT training data (Appendix D of the NWT paper)."""

__version__ = "0.1.0"
