"""The systemd units, shipped as package data for ``tailord install-units``."""
