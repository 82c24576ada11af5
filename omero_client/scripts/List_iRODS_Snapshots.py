"""OMERO script: list the snapshots you saved in iRODS from this OMERO server, newest first.

A thin shell over omero_client (installed in the OMERO server's virtualenv); no
parameters: who you are comes from your OMERO session, where iRODS is from the
facility's configuration on the OMERO server (docs/omero.md).
"""


def main():
    import omero.scripts as scripts
    from omero.gateway import BlitzGateway
    from omero.rtypes import rstring

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
        client.enableKeepAlive(60)  # a long transfer makes no OMERO calls: keep the job's session alive
        from omero_client import script_support

        conn = BlitzGateway(client_obj=client)
        script_support.run_script(client, "List iRODS snapshots", lambda: script_support.list_task(client, conn),
                                  rstring)
    finally:
        client.closeSession()


if __name__ == "__main__":
    main()
