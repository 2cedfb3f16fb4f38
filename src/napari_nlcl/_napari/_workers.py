"""Background work for the widgets: napari thread workers that report every error, and the
notifications that tell the user what happened.

Heavy work runs in :func:`napari.qt.threading.thread_worker` generator workers:
the engine yields progress between tiles (or the trainer an event after every
step), the worker forwards it to the main thread, and Stop quits the worker at
the next yield.  No napari object is touched from a worker thread.
"""

from __future__ import annotations

from typing import Any


def notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def memory_hint(exc: BaseException) -> str:
    """Advice to append to an out-of-memory error's message ('' for other errors)."""
    oom = getattr(__import__("torch"), "OutOfMemoryError", ())
    if isinstance(exc, MemoryError) or (oom and isinstance(exc, oom)) or "out of memory" in str(exc).lower():
        return " (out of memory: use a smaller tile or batch, or the CPU)"
    return ""


class WorkerFailed(Exception):
    """An error raised inside a worker's generator, passed on as a non-``RuntimeError``.

    superqt's ``GeneratorWorker.work()`` *returns* a ``RuntimeError`` raised by
    the generator instead of raising it (it takes it for a deleted Qt object), so
    neither ``errored`` nor ``finished`` is emitted and the widget would wait
    forever.  Every torch error is a ``RuntimeError`` (out-of-memory included);
    :func:`shielded` re-raises them as this.  ``original`` is the error itself.
    """

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


def shielded(gen):
    """Run generator ``gen`` (send, close and return pass through), raising its ``RuntimeError``s
    as :class:`WorkerFailed`, so that a worker reports them through ``errored``."""
    try:
        return (yield from gen)
    except RuntimeError as exc:
        raise WorkerFailed(exc) from exc


def original_error(exc: BaseException) -> BaseException:
    """The error a worker reported, unwrapped from :class:`WorkerFailed`."""
    return exc.original if isinstance(exc, WorkerFailed) else exc


def generator_worker(gen):
    """An unstarted napari thread worker running generator ``gen`` (its yields are progress, its
    return value the result); any error, ``RuntimeError`` included, reaches ``errored``."""
    from napari.qt.threading import thread_worker

    def work():
        return (yield from shielded(gen))

    return thread_worker(work, ignore_errors=True, start_thread=False)()


def predict_worker(data: Any, model: Any, plan: Any):
    """An unstarted worker running the engine on ``data`` along its checked ``plan``
    (:func:`napari_nlcl.inference.plan_inference`); yields (done, total), returns the result."""
    from napari_nlcl.inference import iter_plan

    def steps():
        import numpy as np

        array = np.asarray(data)  # a dask layer without lazy output is read here
        gen = iter_plan(array, model, plan)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value
            yield (p.done, p.total)

    return generator_worker(steps())


def _closing_worker_class():
    from napari.qt.threading import GeneratorWorker

    class ClosingGeneratorWorker(GeneratorWorker):
        """A generator worker that closes its generator in the worker thread when it ends.

        napari's worker simply stops iterating on ``quit()``; closing the
        generator runs the trainer's ``finally``/``GeneratorExit`` code (the
        checkpoint of the current step) before ``finished`` is emitted.
        """

        def work(self):
            try:
                return super().work()
            finally:
                self._gen.close()

    return ClosingGeneratorWorker


def closing_worker(gen, *, total: int, desc: str):
    """An unstarted worker running generator ``gen`` that closes it in the worker thread when it
    ends (Stop included), shown in napari's activity dock as ``desc`` with ``total`` steps; any
    error, ``RuntimeError`` included, reaches ``errored``."""
    from napari.qt.threading import create_worker

    def work():
        yield from shielded(gen)

    return create_worker(work, _start_thread=False, _worker_class=_closing_worker_class(),
                         _ignore_errors=True,  # errors reach the widget's errored slot
                         _progress={"total": total, "desc": desc})
