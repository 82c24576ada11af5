"""Enrolment (an admin act): record the OMERO -> iRODS mapping and prepare the user's snapshot root.

The root is owned by the user, the service account gets modify_object so it
can create snapshots there, and inheritance is OFF: with it on, a collection
the service account creates would carry only the inherited ACL, the service
account would not own it and could not hand it over (observed on a real
server, reference/prep-observed.md round 5, flow A).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from policy.config import PolicyConfig
from policy.errors import NotFound
from policy.mapping import MappingEntry, UserMapping
from policy.placement import snapshot_root
from policy.zone import COLLECTION, Zone, exists, parent_of


class EnrolError(ValueError):
    """The enrolment is refused; the message says why and what to do."""


@dataclass(frozen=True)
class EnrolResult:
    irods_user: str
    omero_user: str
    omero_server: str
    root: str
    created_root: bool
    mapping_changed: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def check_enrollable(zone: Zone, config: PolicyConfig, irods_user: str) -> None:
    utype = zone.user_type(irods_user)
    if utype is None:
        raise EnrolError("iRODS user '{}' does not exist; create it first (iadmin mkuser {} rodsuser)"
                         .format(irods_user, irods_user))
    if irods_user == config.service_account:
        raise EnrolError("'{}' is the service account; OMERO users must map to their own iRODS accounts"
                         .format(irods_user))
    if utype == "rodsadmin":
        raise EnrolError("'{}' is a rodsadmin; snapshots are only handed to ordinary users (rodsuser)"
                         .format(irods_user))
    if utype == "rodsgroup":
        raise EnrolError("'{}' is a group, not a user".format(irods_user))


def prepare_root(admin_zone: Zone, config: PolicyConfig, irods_user: str) -> "tuple[str, bool]":
    """Create the root if needed and set exactly: user own, service account modify_object, no inheritance.

    The admin works in the user's home through admin-mode ACLs (rodsadmin only, never
    the service account) and removes its own temporary access afterwards.
    """
    root = snapshot_root(config.snapshot_root_template, config.zone, irods_user)
    me = admin_zone.user
    created = False
    try:
        if admin_zone.stat(root).kind != COLLECTION:
            raise EnrolError("{} exists and is a data object, not a collection".format(root))
    except NotFound:
        parent = parent_of(root)
        had_parent_access = any(a.user == me and a.level == "own" for a in admin_zone.acl(parent)) \
            if exists(admin_zone, parent) else True
        if not had_parent_access:
            admin_zone.set_acl(parent, me, "admin:own")
        try:
            admin_zone.create_collection(root, recursive=True)
            created = True
        finally:
            if not had_parent_access:
                admin_zone.set_acl(parent, me, "admin:null")
    admin_zone.set_acl(root, irods_user, "admin:own")
    admin_zone.set_acl(root, config.service_account, "admin:modify_object")
    admin_zone.set_acl(root, me, "admin:noinherit")
    if me not in (irods_user, config.service_account):
        admin_zone.set_acl(root, me, "admin:null")
    return root, created


def enrol(admin_zone: Zone, config: PolicyConfig, load_mapping: Callable[[], UserMapping],
          save_mapping: Callable[[UserMapping], None], irods_user: str, omero_user: str, omero_server: str,
          enrolled_at: str, replace: bool = False) -> EnrolResult:
    check_enrollable(admin_zone, config, irods_user)
    mapping = load_mapping()
    current = mapping.lookup(omero_server, omero_user)
    if current is not None and current != irods_user and not replace:
        raise EnrolError("OMERO user '{}' on '{}' is already mapped to '{}'; pass --replace (CLI) or the 4th argument "
                         "'replace' (irule) to change it"
                         .format(omero_user, omero_server, current))
    root, created = prepare_root(admin_zone, config, irods_user)
    changed = current != irods_user
    if changed:
        entry = MappingEntry(omero_server=omero_server, omero_user=omero_user, irods_user=irods_user,
                             enrolled=enrolled_at, enrolled_by=admin_zone.user)
        save_mapping(mapping.with_entry(entry, replace=current is not None))
    return EnrolResult(irods_user, omero_user, omero_server, root, created, changed)


def unenrol(admin_zone: Zone, config: PolicyConfig, load_mapping: Callable[[], UserMapping],
            save_mapping: Callable[[UserMapping], None], omero_user: str, omero_server: str) -> Optional[str]:
    """Remove the mapping and the service account's write access; the user's snapshots stay theirs."""
    mapping = load_mapping()
    irods_user = mapping.lookup(omero_server, omero_user)
    if irods_user is None:
        raise EnrolError("OMERO user '{}' on '{}' is not enrolled".format(omero_user, omero_server))
    save_mapping(mapping.without(omero_server, omero_user))
    still_mapped = any(e.irods_user == irods_user for e in load_mapping().entries)
    if not still_mapped:
        root = snapshot_root(config.snapshot_root_template, config.zone, irods_user)
        if exists(admin_zone, root):
            admin_zone.set_acl(root, config.service_account, "admin:null")
    return irods_user
