"""OMERO script: save the selected objects as a snapshot in iRODS.

A thin shell over omero_client (installed in the OMERO server's virtualenv):
the parameters are declared here so OMERO.web can build the form (Data_Type and
IDs are pre-filled from the selection); the work is omero_client.script_support.
No credential, host or iRODS path is a parameter: the facility configures them
on the OMERO server (docs/omero.md).
"""

DATA_TYPES = ["Project", "Dataset", "Image", "Screen", "Plate"]


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
        from omero_client import script_support

        script_support.run_job(client, "Save to iRODS", script_support.save_task)
    finally:
        client.closeSession()


if __name__ == "__main__":
    main()
