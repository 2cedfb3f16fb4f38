"""Screenshot of napari with the Dehaze widget on the hazy sample (run under xvfb-run).

    xvfb-run -a python docs/make_screenshot.py docs/images/napari_dehaze.png
"""

import sys

import napari
from qtpy.QtWidgets import QApplication

from napari_nlcl._napari._widgets import DehazeWidget


def main(out: str) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 800)
    viewer.open_sample("napari-nlcl", "hazy_scene")
    widget = DehazeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Dehaze")
    worker = widget.run()
    app = QApplication.instance()
    while widget._worker is not None:
        app.processEvents()
    viewer.grid.enabled = True
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
    viewer.screenshot(out, canvas_only=False)
    print(out, worker)
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "napari_dehaze.png")
