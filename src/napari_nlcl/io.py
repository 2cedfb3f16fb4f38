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


def _imread(path: str | os.PathLike) -> np.ndarray:
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
        return _imread(path)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear message
        raise ValueError(f"could not read {path}: {exc}") from exc


def _read_folder(folder: Path):
    import dask
    import dask.array as da

    files = list_images(folder)
    if not files:
        raise ValueError(
            f"folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    first = _imread(files[0])
    planes = [
        da.from_delayed(dask.delayed(_read_checked)(str(f), first.shape), first.shape, first.dtype)
        for f in files
    ]
    return da.stack(planes)


def _read_checked(path: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = _imread(path)
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
def _check_target(path: Path, suffixes: set[str] = WRITE_SUFFIXES) -> None:
    if path.suffix.lower() not in suffixes:
        raise ValueError(
            f"cannot write {path.name!r}: use one of {', '.join(sorted(suffixes))}"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"output folder {parent} is not writable")
    if path.exists() and path.is_dir() != (path.suffix.lower() == ".zarr"):
        raise ValueError(f"{path} exists and is a {'folder' if path.is_dir() else 'file'}; choose another name")


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


def iter_write(path: str | os.PathLike, data: Any, *, rgb: bool | None = None) -> Generator[tuple[int, int], None, Path]:
    """Write ``data`` (numpy or dask) to ``path`` plane by plane.

    Yields ``(planes_done, planes_total)`` and returns the final path.  Lazy
    data is computed one plane at a time, so memory stays at one plane.
    """
    path = Path(path)
    _check_target(path)
    shape = tuple(data.shape)
    rgb = _is_rgb(shape) if rgb is None else rgb
    lead = _lead_shape(shape, rgb)
    total = int(np.prod(lead)) if lead else 1
    suffix = path.suffix.lower()
    if suffix in {".png", ".jpg", ".jpeg"} and lead:
        raise ValueError(
            f"{suffix} holds one image but the data has shape {shape}; write .tif or .zarr for stacks"
        )
    indices = list(np.ndindex(*lead)) if lead else [()]
    with atomic_path(path) as tmp:
        yield 0, total
        if suffix in {".png", ".jpg", ".jpeg"}:
            from skimage import io as skio

            plane = _to_8bit(np.asarray(data))
            if suffix != ".png" and plane.dtype != np.uint8:
                raise ValueError("JPEG stores 8-bit images only; write .png or .tif for 16-bit data")
            skio.imsave(tmp, plane, check_contrast=False)
            yield 1, total
        elif suffix in {".tif", ".tiff"}:
            import tifffile

            with tifffile.TiffWriter(tmp, bigtiff=data.nbytes > 2**31) as writer:
                for k, idx in enumerate(indices):
                    plane = np.asarray(data[idx])
                    writer.write(
                        plane, contiguous=True, photometric="rgb" if rgb else "minisblack",
                        metadata={"shape": list(shape)} if k == 0 else None,
                    )
                    yield k + 1, total
        else:  # zarr
            import zarr

            chunks = (1,) * len(lead) + shape[len(lead):]
            arr = zarr.open_array(
                store=str(tmp), mode="w", shape=shape, chunks=chunks, dtype=np.dtype(data.dtype)
            )
            for k, idx in enumerate(indices):
                arr[idx] = np.asarray(data[idx])
                yield k + 1, total
    return path


def write_image(path: str | os.PathLike, data: Any, *, rgb: bool | None = None, progress: Any = None) -> Path:
    """Write ``data`` to ``path`` atomically; ``progress(done, total)`` per plane."""
    gen = iter_write(path, data, rgb=rgb)
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)
