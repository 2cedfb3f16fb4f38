"""Regenerate the sample images in this folder.

    python sample_data/generate.py

They are made from scikit-image's bundled ``rocket`` photo (SpaceX, public
domain) with napari-nlcl's own rain and haze synthesis and fixed seeds, so
they may be redistributed.  ``tests/test_samples.py`` checks that the code
still reproduces them.
"""

from pathlib import Path

from napari_nlcl.samples import write_samples

if __name__ == "__main__":
    for path in write_samples(Path(__file__).parent):
        print(path)
