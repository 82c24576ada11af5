"""OMERO script: load one of your iRODS snapshots back into OMERO as NEW objects.

A thin shell over omero_client (installed in the OMERO server's virtualenv).
Only snapshots you saved yourself from this OMERO server can be loaded; the
objects are always created anew (existing ones are never changed).
"""


def missing_library(client, title, e):
    """Leave a Message naming what cannot be imported, before any of the library can run."""
    import sys

    from omero.rtypes import rstring

    message = ("{} failed: the OMERO server's Python environment cannot import '{}' ({}). Tell the OMERO/iRODS "
               "facility: install omero-irods-snapshots with its [omero] extra, omero-cli-transfer and "
               "jsonschema into the OMERO server's virtualenv.".format(title, getattr(e, "name", None) or e, e))
    client.setOutput("Message", rstring(message))
    print(message, file=sys.stderr)


def main():
    import omero.scripts as scripts
    from omero.rtypes import rlong

    client = scripts.client(
        "Load_from_iRODS.py",
        "Load one of your iRODS snapshots back into OMERO. It is imported as NEW objects (existing ones are never "
        "changed). Give the snapshot's path, or its number from 'List iRODS Snapshots'.",
        scripts.String("Snapshot", optional=True, grouping="1",
                       description="The snapshot as 'List iRODS Snapshots' shows it: its iRODS path, with its "
                                   "zone in front ('labZone: /labZone/...') where several zones are configured."),
        scripts.Long("Snapshot_Index", optional=True, grouping="2", min=rlong(1),
                     description="Or: the snapshot's number in 'List iRODS Snapshots' (1 = newest)."),
        scripts.String("Message", description="The new OMERO objects, or why the snapshot cannot be loaded.").out(),
        version="0.1.0",
        authors=["OMERO iRODS snapshots"],
        contact="your OMERO/iRODS facility",
    )
    try:
        try:
            from omero_client import script_support
        except ImportError as e:  # the library itself (or what it imports) is missing: say so in the Message
            missing_library(client, "Load from iRODS", e)
            return
        script_support.run_job(client, "Load from iRODS", script_support.load_task)
    finally:
        client.closeSession()


if __name__ == "__main__":
    main()
