"""OMERO scripts (uploaded with omero script upload --official)."""
