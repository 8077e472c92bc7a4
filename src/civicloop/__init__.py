"""civicloop: the closed loop of citizen requests (接诉即办) for grassroots governance."""

__version__ = "0.1.0"
