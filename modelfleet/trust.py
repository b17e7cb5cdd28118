"""Which certificates a modelfleet client trusts when it talks to the platform over HTTPS.

The SDK, the CLI, the worker nodes and the example deployer all ask here, so a self-signed local
gateway is trusted the same way everywhere: an explicit CA file, else `MODELFLEET_CA_FILE`, else
the system's CA store. Verification is never turned off by default; `False` must be asked for.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

CA_FILE_ENV = "MODELFLEET_CA_FILE"


def tls_verify(ca_file: str | Path | None = None, verify: bool = True) -> ssl.SSLContext | bool:
    """What to pass as httpx's `verify=`: an SSL context trusting `ca_file` (or the env's), the
    system store's context, or False only when the caller explicitly asked for no verification."""
    if not verify:
        return False
    path = ca_file or os.environ.get(CA_FILE_ENV) or None
    if path is None:
        return ssl.create_default_context()
    if not Path(path).is_file():
        raise FileNotFoundError(f"CA file {path} does not exist")
    return ssl.create_default_context(cafile=str(path))
