"""What the delayed rule needs from the server's python3 before it touches a drop.

A bare install misses a package and the rule would die half-way with a ModuleNotFoundError in the
server log, the drop stuck `processing` for ever. Checked first instead, a missing package becomes a
`failed` drop whose reason names the package and how to install it (docs/install.md, step 2).

Which packages depend on the configuration: unpacking reads archives with libarchive-c (both the
streaming path and the scan that comes before the native extraction) and streams bytes through an
in-server python-irodsclient session (PREP byte buffers are far too slow for data); with unpacking
off, the delayed rule uses only microservices and needs neither.
"""

from __future__ import annotations

import importlib
from typing import Callable, List, Optional, Tuple

from policy.config import PolicyConfig

# (module imported, package to install with the version docs/install.md step 1 requires) per need;
# the distributions' own packages are older than that (Debian 12: python3-libarchive-c 2.9).
LIBARCHIVE: Tuple[str, str] = ("libarchive", "libarchive-c>=5.0")
IRODSCLIENT: Tuple[str, str] = ("irods.session", "python-irodsclient>=2.0")


def needed(config: PolicyConfig) -> List[Tuple[str, str]]:
    return [LIBARCHIVE, IRODSCLIENT] if config.unpack.enabled else []


def missing_package(config: PolicyConfig,
                    importer: Callable[[str], object] = importlib.import_module) -> Optional[str]:
    """None when everything imports; else the reason a person can act on, naming the package."""
    for module, requirement in needed(config):
        package = requirement.split(">=")[0]
        try:
            importer(module)
        except Exception as e:  # noqa: BLE001 - ImportError, or OSError when libarchive.so itself is missing
            return ("the iRODS server cannot run this policy: the Python package {} is not importable by the "
                    "server's python3 ({}: {}); the facility's admin must install it for that python3 "
                    "(python3 -m pip install '{}', docs/install.md step 1) and run reprocess".format(
                        package, type(e).__name__, str(e)[:200], requirement))
    return None
