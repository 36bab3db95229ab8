"""Values made ready for strict JSON (summaries, reports): shared by training and msgf reproduce."""
from __future__ import annotations

import math


def jsonable(value):
    """Tuples as lists, non-finite floats as None, keys as strings, numpy scalars as Python's."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return jsonable(value.item())
    return value
