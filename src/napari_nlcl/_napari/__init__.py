"""Everything that imports napari, magicgui or Qt lives in this subpackage."""
