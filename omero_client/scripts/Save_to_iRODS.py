"""OMERO script: save the selected objects as a snapshot in iRODS.

A thin shell over omero_client (installed in the OMERO server's virtualenv):
the parameters are declared here so OMERO.web can build the form (Data_Type and
IDs are pre-filled from the selection); the work is omero_client.script_support.
No credential, host or iRODS path is a parameter: the facility configures them
on the OMERO server (docs/omero.md).
"""

DATA_TYPES = ["Project", "Dataset", "Image", "Screen", "Plate"]


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
    from omero.rtypes import rlong, rstring

    client = scripts.client(
        "Save_to_iRODS.py",
        "Save the selected objects (with their original files and annotations, packed by omero-cli-transfer) "
        "as a snapshot in iRODS. iRODS decides where it goes and hands it to your iRODS account; the result "
        "message says where it landed, or why it was refused.",
        scripts.String("Data_Type", optional=False, grouping="1", description="The type of the selected objects.",
                       values=[rstring(t) for t in DATA_TYPES], default=rstring("Image")),
        scripts.List("IDs", optional=False, grouping="2",
                     description="IDs of the objects to save (one snapshot holds objects of one type).").ofType(
                         rlong(0)),
        scripts.String("Label", optional=True, grouping="3",
                       description="Optional words to recognise the snapshot by (part of its name in iRODS)."),
        scripts.String("Message", description="Where the snapshot landed, or why it was refused.").out(),
        version="0.1.0",
        authors=["OMERO iRODS snapshots"],
        contact="your OMERO/iRODS facility",
    )
    try:
        try:
            from omero_client import script_support
        except ImportError as e:  # the library itself (or what it imports) is missing: say so in the Message
            missing_library(client, "Save to iRODS", e)
            return
        script_support.run_job(client, "Save to iRODS", script_support.save_task)
    finally:
        client.closeSession()


if __name__ == "__main__":
    main()
