"""Training recipes (one module per task), registered by name in :mod:`napari_nlcl.engine`."""
