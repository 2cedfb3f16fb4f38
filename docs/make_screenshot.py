"""Screenshot of napari with the Dehaze, Derain or Translate widget on a built-in sample (run under xvfb-run).

    xvfb-run -a python docs/make_screenshot.py docs/images/napari_dehaze.png
    xvfb-run -a python docs/make_screenshot.py docs/images/napari_derain.png --task derain
    xvfb-run -a python docs/make_screenshot.py docs/images/napari_translate.png --task translate
"""

import argparse

import napari
from qtpy.QtWidgets import QApplication

from napari_nlcl._napari._dehaze import DehazeWidget
from napari_nlcl._napari._derain import DerainWidget
from napari_nlcl._napari._translate import TranslateWidget

TASKS = {"dehaze": (DehazeWidget, "hazy_scene"), "derain": (DerainWidget, "rainy_scene"),
         "translate": (TranslateWidget, "translation_pair")}


def main(out: str, task: str) -> None:
    cls, sample = TASKS[task]
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    viewer.open_sample("napari-nlcl", sample)
    widget = cls(viewer)
    if task == "derain":
        widget.rain_check.value = True
    if task == "translate":
        widget.layer_combo.value = viewer.layers["photos (domain A)"]
    viewer.window.add_dock_widget(widget, name=task.capitalize())
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
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="napari_dehaze.png")
    ap.add_argument("--task", choices=sorted(TASKS), default="dehaze")
    args = ap.parse_args()
    main(args.out, args.task)
