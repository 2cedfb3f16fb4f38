"""Screenshot of napari with the Train widget fine-tuning the default dehazer, taken mid-run.

    xvfb-run -a -s "-screen 0 1280x800x24" python docs/make_train_screenshot.py docs/images/napari_train.png

Opens the hazy sample, chooses Dehaze / start from the shipped default / the
sample as unsupervised training data, starts training and grabs the window
while the worker is running (loss plot and preview layer live).
"""

import sys
import time

import napari
from qtpy.QtWidgets import QApplication

from napari_nlcl._napari._train import DEFAULT, TrainWidget


def main(out: str, steps_before_shot: int = 60) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    viewer.open_sample("napari-nlcl", "hazy_scene")
    layer = viewer.layers[0]
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Train / fine-tune")
    w.task_combo.value = "dehaze"
    w._source_widgets["hazy"][0].value = layer
    w.start_combo.value = DEFAULT
    w.steps_spin.value = 400
    w.batch_spin.value = 2
    w.preview_combo.value = layer
    w.preview_spin.value = 10
    w.monitor_spin.value = 10  # the quality plot fills during the shot's first steps
    w.name_edit.value = "rocket haze"
    w.start()
    app = QApplication.instance()
    while w.trainer.step < steps_before_shot:
        app.processEvents()
        time.sleep(0.02)
    viewer.grid.enabled = True
    viewer.reset_view()
    for _ in range(30):
        app.processEvents()
    viewer.screenshot(out, canvas_only=False)
    w.stop()
    while w._worker is not None:
        app.processEvents()
    print(out, "at step", w.trainer.step)
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "napari_train.png")
