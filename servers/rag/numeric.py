"""numpy for tool-rag's vectors, loaded on first use with OpenBLAS on one thread."""

from __future__ import annotations

import os
from typing import Any


def numpy() -> Any:
    """The numpy module; every rag module that needs numpy (or loads an embedder built on it) gets
    it here, so the thread limit is in place before OpenBLAS starts.

    On 2 cores OpenBLAS threads spin after each product and slow everything else down (the USE
    encoder went 4x slower with two), while the products here (a query against the chunk vectors)
    are small enough for one thread. OpenBLAS reads the variable once, when numpy is first loaded,
    which is why it is set now rather than when the module is imported, and an operator's own
    value is kept; the USE embedder also pins one thread around each call with threadpoolctl, which
    holds whatever loaded numpy first."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numpy as np

    return np
