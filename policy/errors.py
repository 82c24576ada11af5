"""iRODS error codes and the typed exceptions the use cases see.

Every adapter (PREP callback, python-irodsclient, simulated zone) turns the
numeric iRODS code it got into one of these classes, so the use cases never
parse ``[iRods__Error__Code:N]`` strings or know which adapter they run on.
The numbers are the ones the real server returned (reference/prep-observed.md).
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Type

RULE_ENGINE_CONTINUE = 5000000

# name -> code, as in irods_errors (rodsErrorTable.h)
CODES: Dict[str, int] = {
    "SYS_INTERNAL_NULL_INPUT_ERR": -24000,
    "SYS_COPY_ALREADY_IN_RESC": -46000,
    "SYS_NO_API_PRIV": -13000,
    "SYS_INVALID_INPUT_PARAM": -130000,
    "OVERWRITE_WITHOUT_FORCE_FLAG": -312000,
    "USER_FILE_DOES_NOT_EXIST": -310000,
    "USER_CHKSUM_MISMATCH": -314000,
    "USER_INPUT_PATH_ERR": -317000,
    "OBJ_PATH_DOES_NOT_EXIST": -358000,
    "CAT_SQL_ERR": -806000,
    "CAT_NO_ROWS_FOUND": -808000,
    "CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME": -809000,
    "CAT_UNKNOWN_COLLECTION": -814000,
    "CAT_UNKNOWN_FILE": -817000,
    "CAT_NO_ACCESS_PERMISSION": -818000,
    "CAT_SUCCESS_BUT_WITH_NO_INFO": -819000,
    "CAT_INVALID_USER": -827000,
    "CAT_INSUFFICIENT_PRIVILEGE_LEVEL": -830000,
    "CAT_NAME_EXISTS_AS_COLLECTION": -833000,
    "CAT_NAME_EXISTS_AS_DATAOBJ": -834000,
    "CAT_COLLECTION_NOT_EMPTY": -821000,
    "RULE_ENGINE_ERROR": -1828000,
    "CHECK_VERIFICATION_RESULTS": -407000,  # a verify found a replica's bytes differ (policy/fixity.py)
    "UNIX_FILE_OPEN_ERR": -510002,  # a replica's file cannot be opened (its vault file is gone)
}
NAMES: Dict[int, str] = {v: k for k, v in CODES.items()}

_CODE_RE = re.compile(r"\[iRods__Error__Code:(-?\d+)\]")


class IrodsError(Exception):
    """An iRODS operation failed with a known numeric code."""

    def __init__(self, code: int, message: str = "") -> None:
        self.code = int(code)
        self.name = NAMES.get(self.code, "IRODS_ERROR")
        super().__init__("{} ({}){}".format(self.name, self.code, ": " + message if message else ""))


class AlreadyExists(IrodsError):
    """The target name is taken: never overwrite, pick another name."""


class NotFound(IrodsError):
    """The path (or its parent collection) does not exist."""


class NoPermission(IrodsError):
    """The acting user lacks the access level the operation needs."""


class InvalidUser(IrodsError):
    """The named iRODS user does not exist."""


class InvalidInput(IrodsError):
    """The server refused the arguments (bad JSON, missing entity, ...)."""


_CLASS_BY_CODE: Dict[int, Type[IrodsError]] = {
    -834000: AlreadyExists,
    -833000: AlreadyExists,
    -809000: AlreadyExists,
    -312000: AlreadyExists,
    -46000: AlreadyExists,
    -310000: NotFound,
    -358000: NotFound,
    -808000: NotFound,
    -814000: NotFound,
    -817000: NotFound,
    -818000: NoPermission,
    -830000: NoPermission,
    -13000: NoPermission,
    -827000: InvalidUser,
    -130000: InvalidInput,
}


def error_for(code: int, message: str = "") -> IrodsError:
    """Build the typed exception for an iRODS code."""
    cls = _CLASS_BY_CODE.get(int(code), IrodsError)
    return cls(code, message)


def code_from_text(text: str) -> Optional[int]:
    """Parse the code PREP puts at the start of a RuntimeError's text."""
    m = _CODE_RE.search(text or "")
    return int(m.group(1)) if m else None
