"""CLI sub-command groups: each module is click-only and imports nothing heavy at import time."""
