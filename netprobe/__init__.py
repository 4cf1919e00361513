"""netprobe: measure a broadband line and free cloud-drive tiers against what was promised."""

__version__ = "0.1.0"
