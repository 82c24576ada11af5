"""The OMERO side: a small library and the OMERO.web scripts (Save / List / Load)."""
