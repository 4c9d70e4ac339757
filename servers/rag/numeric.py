"""numpy for tool-rag's vectors, loaded on first use with OpenBLAS on one thread."""

from __future__ import annotations

import os
from typing import Any


def numpy() -> Any:
    """The numpy module; every rag module that needs numpy (or loads an embedder built on it) gets
    it here, so the thread limit is in place before OpenBLAS starts.

    numpy's OpenBLAS threads spin after each product and starve the e5 encoder's OpenMP threads on
    2 cores (measured: the e5 query went from 17 ms to 55 ms); the products here are small enough
    for one thread. OpenBLAS reads the variable once, when numpy is first loaded, which is why it is
    set now rather than when the module is imported; an operator's own value is kept."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numpy as np

    return np
