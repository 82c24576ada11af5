"""Who a drop belongs to in iRODS: the OMERO user@server mapped through the admin's table.

Explicit refusals, each with a reason a facility admin can act on. A mapping
to a rodsadmin or to the service account itself is refused: the snapshot is
handed over with `own`, and handing admin accounts (or the account that
writes every drop) ownership of researcher data would break the privilege model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from policy.mapping import UserMapping


@dataclass(frozen=True)
class IdentityDecision:
    irods_user: Optional[str]
    refusal: Optional[str] = None
    rule: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.irods_user is not None and self.refusal is None


def resolve_identity(mapping: UserMapping, omero_server: str, omero_user: str, service_account: str,
                     user_type: Callable[[str], Optional[str]]) -> IdentityDecision:
    target = mapping.lookup(omero_server, omero_user)
    who = "OMERO user '{}' on server '{}'".format(omero_user, omero_server)
    if target is None:
        return IdentityDecision(None, "{} is not enrolled (no mapping to an iRODS user); ask the facility's iRODS "
                                      "admin to run: omero-snapshots enrol <irods_user> --omero-user {} "
                                      "--omero-server {}".format(who, omero_user, omero_server), "unmapped")
    if target == service_account:
        return IdentityDecision(None, "{} is mapped to the service account '{}' itself, which is refused; the "
                                      "admin must map it to the researcher's own iRODS account"
                                .format(who, service_account), "mapped_to_service_account")
    utype = user_type(target)
    if utype is None:
        return IdentityDecision(None, "{} is mapped to iRODS user '{}', which does not exist; the admin must "
                                      "create it or fix the mapping".format(who, target), "mapped_user_missing")
    if utype == "rodsadmin":
        return IdentityDecision(None, "{} is mapped to '{}', a rodsadmin, which is refused: snapshots are only "
                                      "handed to ordinary users; the admin must map it to the researcher's own "
                                      "rodsuser account".format(who, target), "mapped_to_rodsadmin")
    if utype == "rodsgroup":
        return IdentityDecision(None, "{} is mapped to '{}', which is a group, not a user; the admin must map "
                                      "it to the researcher's own iRODS account".format(who, target),
                                "mapped_to_group")
    if utype not in ("rodsuser", "groupadmin"):
        return IdentityDecision(None, "{} is mapped to '{}' of user type '{}'; only rodsuser and groupadmin "
                                      "accounts receive snapshots".format(who, target, utype), "mapped_user_type")
    return IdentityDecision(target)
