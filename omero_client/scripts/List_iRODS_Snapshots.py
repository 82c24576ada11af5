"""OMERO script: list the snapshots you saved in iRODS from this OMERO server, newest first.

A thin shell over omero_client (installed in the OMERO server's virtualenv); no
parameters: who you are comes from your OMERO session, where iRODS is from the
facility's configuration on the OMERO server (docs/omero.md).
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

    client = scripts.client(
        "List_iRODS_Snapshots.py",
        "List the snapshots you saved in iRODS from this OMERO server, newest first, with label, date, size and "
        "status (and the iRODS zone of each, where several are configured). The numbers can be given to 'Load from "
        "iRODS' as Snapshot_Index.",
        scripts.String("Message", description="Your snapshots, newest first.").out(),
        version="0.1.0",
        authors=["OMERO iRODS snapshots"],
        contact="your OMERO/iRODS facility",
    )
    try:
        try:
            from omero_client import script_support
        except ImportError as e:  # the library itself (or what it imports) is missing: say so in the Message
            missing_library(client, "List iRODS snapshots", e)
            return
        script_support.run_job(client, "List iRODS snapshots", script_support.list_task)
    finally:
        client.closeSession()


if __name__ == "__main__":
    main()
