"""Reading images and stacks lazily, writing results atomically.

Inputs: a single image (PNG, JPEG, TIFF, ...), a multi-page TIFF (read lazily,
one page per dask block), a folder of images (a lazy stack in natural sort
order) or a zarr array.  Outputs: TIFF (any stack), PNG/JPEG (one 2-D or RGB
plane), zarr (any stack, one chunk per plane).

Every writer writes to a temporary name next to the target and renames it
into place only when it is complete, so an interrupted or failed write never
leaves a partial file and never destroys an existing one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"}
WRITE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".zarr"}


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files in ``folder`` in natural order (frame2 before frame10)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=_natural_key)


def read_file(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    if path.suffix.lower() in {".tif", ".tiff"}:
        import tifffile

        return tifffile.imread(path)
    from skimage import io as skio

    return np.asarray(skio.imread(path))


def read_image(path: str | os.PathLike):
    """Read ``path`` as a numpy array (one image) or a lazy dask array (a stack).

    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` for an
    unreadable or empty one.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    try:
        if path.is_dir():
            if path.suffix.lower() == ".zarr" or (path / ".zarray").exists() or (path / "zarr.json").exists():
                import dask.array as da

                return da.from_zarr(str(path))
            return _read_folder(path)
        if path.suffix.lower() in {".tif", ".tiff"}:
            return _read_tiff(path)
        return read_file(path)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear message
        text = str(exc)
        if "backend" in text or "cannot identify image" in text or isinstance(exc, (OSError, SyntaxError)):
            # imageio's "install a plugin" advice is wrong for a damaged or renamed file
            raise ValueError(f"could not read {path}: it is not a readable {path.suffix or 'image'} "
                             "file (damaged, or another kind of file with this name)") from exc
        raise ValueError(f"could not read {path}: {exc}") from exc


def _read_folder(folder: Path):
    import dask
    import dask.array as da

    files = list_images(folder)
    if not files:
        raise ValueError(
            f"folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    first = read_file(files[0])
    planes = [
        da.from_delayed(dask.delayed(_read_checked)(str(f), first.shape), first.shape, first.dtype)
        for f in files
    ]
    return da.stack(planes)


def _read_checked(path: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = read_file(path)
    if arr.shape != shape:
        raise ValueError(
            f"{path} has shape {arr.shape} but the first image of its folder has {shape}; "
            "a folder stack needs images of one size"
        )
    return arr


def _read_tiff(path: Path):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, dtype = tuple(series.shape), np.dtype(series.dtype)
        n_pages = len(series.pages)
        page_shape = tuple(series.pages[0].shape)
    if n_pages <= 1:
        return tifffile.imread(path)
    lead = shape[: len(shape) - len(page_shape)]
    if int(np.prod(lead)) != n_pages:
        return tifffile.imread(path)
    import dask
    import dask.array as da

    pages = [
        da.from_delayed(dask.delayed(_read_page)(str(path), i), page_shape, dtype)
        for i in range(n_pages)
    ]
    return da.stack(pages).reshape(lead + page_shape)


def _read_page(path: str, index: int) -> np.ndarray:
    import tifffile

    return tifffile.imread(path, key=index)


# --------------------------------------------------------------------------- writing
def check_target(path: str | os.PathLike, suffixes: set[str] = WRITE_SUFFIXES) -> Path:
    """Refuse, before anything is computed, an output that cannot be written; returns it as a Path.

    The folder is checked by creating (and removing) a probe file in it, so
    read-only mounts and pseudo file systems (``/proc``) fail here too.
    """
    path = Path(path)
    if not path.name or str(path) in (".", ".."):
        raise ValueError("no output file name given; choose a file such as result.tif or result.zarr")
    if path.suffix.lower() not in suffixes:
        raise ValueError(
            f"cannot write {path.name!r}: use one of {', '.join(sorted(suffixes))}"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder {parent} does not exist; create it first")
    probe = parent / f".{path.name}.{uuid.uuid4().hex[:8]}.probe"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PermissionError(f"cannot write in output folder {parent}: {exc.strerror or exc}") from None
    if path.exists() and path.is_dir() != (path.suffix.lower() == ".zarr"):
        raise ValueError(f"{path} exists and is a {'folder' if path.is_dir() else 'file'}; choose another name")
    return path



def check_targets(outputs: list[Any], inputs: list[Any] = ()) -> list[Path]:
    """:func:`check_target` for every output, and refuse outputs that repeat or name an input.

    Paths are compared resolved (symbolic links, ``..``), so ``-o ./x.tif`` for
    input ``x.tif`` is refused as well: writing over the image being read would
    destroy the original.
    """
    paths = [check_target(p) for p in outputs]
    seen: dict[Path, Path] = {}
    sources = {Path(p).resolve(): Path(p) for p in inputs if p is not None}
    for p in paths:
        key = p.resolve()
        if key in sources:
            raise ValueError(f"the output {p} is the input {sources[key]}; choose another output "
                             "file (the original is never overwritten)")
        for src, given in sources.items():
            if src.is_dir() and key.is_relative_to(src):
                raise ValueError(f"the output {p} lies inside the input {given}; choose a file "
                                 "outside it")
        if key in seen:
            raise ValueError(f"two outputs name the same file {p}; give each its own name")
        seen[key] = p
    return paths


@contextmanager
def deferred_interrupt(*, raise_after: bool = True, message: str = "") -> Iterator[dict[str, bool]]:
    """Within the block, Ctrl+C (SIGINT) only sets ``flag["stop"]``; main thread only.

    ``raise_after``: raise ``KeyboardInterrupt`` when the block ends if Ctrl+C came (a short
    critical section, e.g. one zarr chunk that zarr writes on a background I/O thread, which an
    interrupt in the waiting main thread would leave writing into a folder being removed).
    Otherwise the caller checks the flag and stops at a safe point (the CLI between training
    steps), printing ``message`` at the first Ctrl+C; a second one raises at once.
    """
    import signal
    import sys
    import threading

    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_sigint(signum, frame) -> None:
        if flag["stop"] and not raise_after:
            raise KeyboardInterrupt
        flag["stop"] = True
        if message:
            print(message, file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
    if raise_after and flag["stop"]:
        raise KeyboardInterrupt


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it over ``path`` on success."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        yield tmp
        if tmp.is_dir():
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _lead_shape(shape: tuple[int, ...], rgb: bool) -> tuple[int, ...]:
    return shape[: len(shape) - (3 if rgb else 2)]


def _is_rgb(shape: tuple[int, ...]) -> bool:
    return len(shape) >= 3 and shape[-1] in (3, 4)


def _to_8bit(plane: np.ndarray) -> np.ndarray:
    if plane.dtype == np.uint8:
        return plane
    if plane.dtype.kind == "f" and plane.size and plane.min() >= 0 and plane.max() <= 1:
        return np.rint(plane * 255).astype(np.uint8)
    if plane.dtype == np.uint16:
        return plane
    raise ValueError(
        f"cannot store {plane.dtype} data in an 8-bit image file; write .tif or .zarr instead"
    )


class _PlaneWriter:
    """Writes the planes of one array, in order, to a temporary path of one format."""

    def __init__(self, tmp: Path, target: Path, shape: tuple[int, ...], dtype: np.dtype,
                 rgb: bool, lead: tuple[int, ...]):
        self.tmp, self.target, self.shape, self.rgb = tmp, target, shape, rgb
        self.suffix = target.suffix.lower()
        self._tiff = self._zarr = None
        if self.suffix in {".png", ".jpg", ".jpeg"} and lead:
            raise ValueError(
                f"{self.suffix} holds one image but the data has shape {shape}; write .tif or .zarr for stacks"
            )
        if self.suffix in {".tif", ".tiff"}:
            import tifffile

            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            self._tiff = tifffile.TiffWriter(tmp, bigtiff=nbytes > 2**31)
        elif self.suffix == ".zarr":
            import zarr

            chunks = (1,) * len(lead) + shape[len(lead):]
            self._zarr = zarr.open_array(store=str(tmp), mode="w", shape=shape, chunks=chunks,
                                         dtype=np.dtype(dtype))

    def write(self, k: int, idx: tuple[int, ...], plane: np.ndarray) -> None:
        if self._tiff is not None:
            self._tiff.write(
                plane, contiguous=True, photometric="rgb" if self.rgb else "minisblack",
                metadata={"shape": list(self.shape)} if k == 0 else None,
            )
        elif self._zarr is not None:
            with deferred_interrupt():  # the chunk is on disk before Ctrl+C acts
                self._zarr[idx] = plane
        else:
            from skimage import io as skio

            plane = _to_8bit(plane)
            if self.suffix != ".png" and plane.dtype != np.uint8:
                raise ValueError("JPEG stores 8-bit images only; write .png or .tif for 16-bit data")
            skio.imsave(self.tmp, plane, check_contrast=False)

    def close(self) -> None:
        if self._tiff is not None:
            self._tiff.close()
            self._tiff = None


def _iter_planes(datas: list[Any], indices: list[tuple[int, ...]]) -> Generator[list[np.ndarray], None, None]:
    """Plane ``idx`` of every array for each of ``indices``, lazy ones computed together (shared
    work done once); with an active dask.distributed client, several planes at once on the
    cluster (:func:`napari_nlcl.inference.cluster.iter_computed`)."""
    lazy = [i for i, d in enumerate(datas) if type(d).__module__.startswith("dask")]
    computed = None
    if lazy:
        from napari_nlcl.inference.cluster import iter_computed

        computed = iter_computed([datas[i] for i in lazy], indices)
    for idx in indices:
        out = [None if i in lazy else np.asarray(d[idx]) for i, d in enumerate(datas)]
        if computed is not None:
            for i, plane in zip(lazy, next(computed)):
                out[i] = plane
        yield out


def iter_write_many(targets: list[tuple[Any, Any]], *, rgb: bool | None = None,
                    inputs: list[Any] = ()) -> Generator[tuple[int, int], None, list[Path]]:
    """Write several arrays of the same planes (e.g. a background and its rain layer) in one pass.

    ``targets`` is ``[(path, data), ...]``.  Every target is checked before
    anything is computed (:func:`check_targets`, against ``inputs`` too); the
    planes of lazy arrays are computed together, so work they share (the
    model) runs once per plane.  Each file appears only when all are complete.
    Yields ``(planes_done, planes_total)``; returns the paths.
    """
    paths = check_targets([p for p, _ in targets], inputs)
    datas = [d for _, d in targets]
    shape = tuple(datas[0].shape)
    rgb = _is_rgb(shape) if rgb is None else rgb
    lead = _lead_shape(shape, rgb)
    for d in datas[1:]:
        if _lead_shape(tuple(d.shape), rgb) != lead:
            raise ValueError(f"outputs of shapes {shape} and {tuple(d.shape)} do not share their planes")
    total = int(np.prod(lead)) if lead else 1
    indices = list(np.ndindex(*lead)) if lead else [()]
    with contextlib.ExitStack() as stack:
        writers = []
        for path, data in zip(paths, datas):
            tmp = stack.enter_context(atomic_path(path))
            writer = _PlaneWriter(tmp, path, tuple(data.shape), np.dtype(data.dtype), rgb, lead)
            stack.callback(writer.close)
            writers.append(writer)
        yield 0, total
        for k, (idx, planes) in enumerate(zip(indices, _iter_planes(datas, indices))):
            for writer, plane in zip(writers, planes):
                try:
                    writer.write(k, idx, plane)
                except OSError as exc:  # name the user's file, not the temporary one
                    raise OSError(f"cannot write {writer.target}: {exc.strerror or exc}") from exc
            yield k + 1, total
        for writer in writers:
            writer.close()
    return paths


def iter_write(path: str | os.PathLike, data: Any, *, rgb: bool | None = None) -> Generator[tuple[int, int], None, Path]:
    """Write ``data`` (numpy or dask) to ``path`` plane by plane.

    Yields ``(planes_done, planes_total)`` and returns the final path.  Lazy
    data is computed one plane at a time, so memory stays at one plane.
    """
    paths = yield from iter_write_many([(path, data)], rgb=rgb)
    return paths[0]


def write_images(targets: list[tuple[Any, Any]], *, rgb: bool | None = None, progress: Any = None,
                 inputs: list[Any] = ()) -> list[Path]:
    """Write several arrays in one pass (:func:`iter_write_many`); ``progress(done, total)`` per plane."""
    gen = iter_write_many(targets, rgb=rgb, inputs=inputs)
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)


def write_image(path: str | os.PathLike, data: Any, *, rgb: bool | None = None, progress: Any = None) -> Path:
    """Write ``data`` to ``path`` atomically; ``progress(done, total)`` per plane."""
    return write_images([(path, data)], rgb=rgb, progress=progress)[0]
