"""Property-based fuzzing of the public API (#19): every call either returns an array of the
input's shape and dtype or raises ValueError / TypeError with a message; never another
exception, never a silent result along the wrong axis."""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import napari_nlcl  # noqa: E402
from napari_nlcl.checks import AMBIGUOUS_TRAILING  # noqa: E402

# mostly what users bring, sometimes what the engine must refuse
DTYPES = ["uint8"] * 3 + ["uint16"] * 3 + ["int16", "float16", "float32", "float32", "float64",
                                          "bool", "int32", "complex64"]
CALLS = [("dehaze", "dcp"), ("derain", "directional"), ("derain", "default"), ("dehaze", "default")]
OPTIONS = {"dcp": ["omega", "patch", "t0"], "directional": ["length", "strength"], "default": []}


@st.composite
def images(draw):
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    side = st.one_of(st.integers(40, 72), st.integers(40, 72), st.integers(1, 72))  # mostly usable
    h, w = draw(side), draw(side)
    channels = draw(st.sampled_from([None, None, 3, 3, 4, 1, 2, 5, 16]))
    shape = (*lead, h, w) + (() if channels is None else (channels,))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype.kind == "f":
        scale = draw(st.sampled_from([1.0, 255.0, 1e4, -3.0]))
        data = (rng.random(shape) * scale).astype(dtype)
        if draw(st.integers(0, 9)) == 0 and data.size:
            data.flat[draw(st.integers(0, data.size - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    elif dtype.kind == "c":
        data = rng.random(shape).astype(dtype)
    elif dtype.kind == "b":
        data = rng.random(shape) > 0.5
    else:
        info = np.iinfo(dtype)
        data = rng.integers(max(info.min, -1000), min(info.max, 60000), size=shape, endpoint=True).astype(dtype)
    return data


@st.composite
def calls(draw):
    task, method = draw(st.sampled_from(CALLS))
    names = OPTIONS[method] + ["bogus"]
    values = st.one_of(st.floats(0.05, 0.95), st.integers(3, 41), st.integers(-5, 200),
                       st.floats(-1, 2, allow_nan=False), st.just("x"))
    opts = draw(st.dictionaries(st.sampled_from(names), values, max_size=2)) if draw(
        st.integers(0, 3)) == 0 else {}
    axis = draw(st.sampled_from(["auto", "auto", "auto", None, -1, 0, 5]))
    lazy = draw(st.booleans())
    return task, method, opts, axis, lazy


def _run(image, task, method, opts, axis, lazy):
    import dask.array as da

    fn = getattr(napari_nlcl, task)
    data = da.from_array(image, chunks=(1,) * (image.ndim - 2) + image.shape[-2:]) if lazy else image
    kw = {"model": method}
    out = fn(data, **kw, channel_axis=axis, device="cpu", **opts)
    return np.asarray(out.compute() if lazy else out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), call=calls())
def test_every_call_returns_the_input_shape_or_says_why(image, call):
    task, method, opts, axis, lazy = call
    try:
        out = _run(image, task, method, opts, axis, lazy)
    except (ValueError, TypeError) as exc:
        hypothesis.event(f"refused: {type(exc).__name__}: {str(exc)[:50]}")
        assert str(exc).strip(), "an error without a message"
        return
    hypothesis.event("processed")
    assert out.shape == image.shape and out.dtype == image.dtype
    assert "bogus" not in opts  # an unknown option never passes silently
    last, before = image.shape[-1], image.shape[-2] if image.ndim >= 2 else 0
    if axis == "auto" and image.ndim >= 3 and last not in (3, 4) and last <= AMBIGUOUS_TRAILING \
            and before >= 4 * last:
        pytest.fail(f"a short trailing axis ({last}) was processed without asking which it is")
