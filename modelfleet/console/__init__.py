"""The web console, served by the gateway at `/console` (see `mount.py`)."""
