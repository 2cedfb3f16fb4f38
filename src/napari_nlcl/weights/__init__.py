"""Package data: weights shipped with napari-nlcl (see ``scripts/make_offline_encoder.py``)."""
