"""OCR for Chinese and English text, offline, behind one interface (the reader, VQA and video use it).

Two engines:
- `rapidocr` (PyPI, bundles PP-OCR detection/recognition models, runs on onnxruntime): the best
  reader of screenshots and mixed Chinese/English layouts measured here;
- `tesseract` (Debian's `tesseract-ocr` + `tesseract-ocr-chi-sim`): faster on clean scanned pages;
  run with `OMP_THREAD_LIMIT=1`; its Chinese output has spaces between characters removed.

`TOOLSUITE_OCR_ENGINE` picks one (`auto`, `rapidocr`, `tesseract`); `auto` prefers rapidocr and
falls back to tesseract (see the README for the measurements behind that choice). Engines load on
first use and stay loaded.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from shared import children, cjk, settings
from shared.errors import NotConfigured
from shared.lazy import LazyEngine

ENGINES = ("rapidocr", "tesseract")


@dataclass(frozen=True)
class OcrLine:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the input image
    confidence: float  # 0..1


@dataclass
class OcrResult:
    engine: str
    lines: list[OcrLine] = field(default_factory=list)
    width: int = 0
    height: int = 0
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return lines_to_text(self.lines)


def lines_to_text(lines: list[OcrLine]) -> str:
    """Lines in reading order: rows top to bottom (boxes whose centres are within half a line height
    share a row), left to right inside a row, separated by two spaces."""
    if not lines:
        return ""
    ordered = sorted(lines, key=lambda line: ((line.box[1] + line.box[3]) / 2, line.box[0]))
    rows: list[list[OcrLine]] = []
    for line in ordered:
        centre = (line.box[1] + line.box[3]) / 2
        height = max(line.box[3] - line.box[1], 1.0)
        if rows:
            last = rows[-1][0]
            last_centre = (last.box[1] + last.box[3]) / 2
            if abs(centre - last_centre) <= max(height, last.box[3] - last.box[1]) / 2:
                rows[-1].append(line)
                continue
        rows.append([line])
    return "\n".join("  ".join(item.text for item in sorted(row, key=lambda item: item.box[0])) for row in rows)


def _to_rgb_array(image: Any) -> Any:
    """numpy RGB array from bytes, a path, a PIL image or an array."""
    import numpy as np
    from PIL import Image

    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, bytes | bytearray):
        image = Image.open(io.BytesIO(image))
    elif isinstance(image, str | os.PathLike):
        image = Image.open(image)
    return np.asarray(image.convert("RGB"))


class RapidOcrEngine:
    name = "rapidocr"

    def __init__(self) -> None:
        import logging

        from rapidocr import RapidOCR

        threads = int(settings.number("TOOLSUITE_OCR_THREADS", 2, minimum=1))
        # Measured here: the angle classifier and upscaling the short side to 736 px (the defaults)
        # cost 2-3x the time and changed no characters on real screenshots and pages; the detector
        # instead sees the image with its long side capped at 2000 px.
        self._ocr = RapidOCR(params={
            "Global.log_level": "error",
            "Global.use_cls": False,
            "Det.limit_type": "max",
            "Det.limit_side_len": 2000,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self._lock = threading.Lock()  # onnxruntime sessions are shared; one image at a time

    def read(self, image: Any) -> OcrResult:
        array = _to_rgb_array(image)
        started = time.perf_counter()
        with self._lock:
            output = self._ocr(array)
        lines: list[OcrLine] = []
        if output.txts:
            for text, score, box in zip(output.txts, output.scores, output.boxes, strict=False):
                xs = [float(point[0]) for point in box]
                ys = [float(point[1]) for point in box]
                if text.strip():
                    lines.append(OcrLine(text.strip(), (min(xs), min(ys), max(xs), max(ys)), float(score)))
        return OcrResult(self.name, lines, int(array.shape[1]), int(array.shape[0]), time.perf_counter() - started)


class TesseractEngine:
    name = "tesseract"

    def __init__(self) -> None:
        binary = shutil.which("tesseract")
        if binary is None:
            raise NotConfigured("tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-chi-sim)")
        self._binary = binary
        listed = children.run([binary, "--list-langs"], timeout=30, what="tesseract --list-langs")
        available = set(b"\n".join((listed.stdout, listed.stderr)).decode(errors="replace").split())
        wanted = [lang for lang in ("chi_sim", "eng") if lang in available]
        if not wanted:
            raise NotConfigured("tesseract has neither the chi_sim nor the eng language installed")
        self.languages = "+".join(wanted)

    def read(self, image: Any) -> OcrResult:
        from PIL import Image

        array = _to_rgb_array(image)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        started = time.perf_counter()
        env = {"OMP_THREAD_LIMIT": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        # A child of the call: killed with its process group when the call times out or is cancelled.
        done = children.run([self._binary, "stdin", "stdout", "-l", self.languages, "--psm", "3", "tsv"],
                            input=buffer.getvalue(), timeout=120, env=env, what="tesseract on one image")
        rows = csv.DictReader(io.StringIO(done.stdout.decode("utf-8", errors="replace")), delimiter="\t",
                              quoting=csv.QUOTE_NONE)
        words: dict[tuple[str, str, str, str], list[dict[str, str]]] = {}
        for row in rows:
            if row.get("level") == "5" and (row.get("text") or "").strip():
                key = (row["page_num"], row["block_num"], row["par_num"], row["line_num"])
                words.setdefault(key, []).append(row)
        lines = []
        for group in words.values():
            x0 = min(int(w["left"]) for w in group)
            y0 = min(int(w["top"]) for w in group)
            x1 = max(int(w["left"]) + int(w["width"]) for w in group)
            y1 = max(int(w["top"]) + int(w["height"]) for w in group)
            text = cjk.remove_spaces_between(" ".join(w["text"] for w in group))
            confidence = sum(max(float(w["conf"]), 0.0) for w in group) / len(group) / 100
            lines.append(OcrLine(text, (float(x0), float(y0), float(x1), float(y1)), confidence))
        return OcrResult(self.name, lines, int(array.shape[1]), int(array.shape[0]), time.perf_counter() - started)


_ENGINES = {
    "rapidocr": LazyEngine("OCR engine rapidocr", RapidOcrEngine, "pip install rapidocr onnxruntime"),
    "tesseract": LazyEngine("OCR engine tesseract", TesseractEngine,
                            "apt-get install tesseract-ocr tesseract-ocr-chi-sim"),
}


def engine(name: str | None = None) -> RapidOcrEngine | TesseractEngine:
    """The configured OCR engine (loaded once per process)."""
    choice = name or settings.choice("TOOLSUITE_OCR_ENGINE", ("auto", *ENGINES), "auto")
    if choice in _ENGINES:
        return _ENGINES[choice].get()
    errors = []
    for candidate in ENGINES:
        try:
            return _ENGINES[candidate].get()
        except NotConfigured as exc:
            errors.append(str(exc))
    raise NotConfigured("no OCR engine is available: " + "; ".join(errors))


def available_engines() -> list[str]:
    import importlib.util

    found = []
    if importlib.util.find_spec("rapidocr") and importlib.util.find_spec("onnxruntime"):
        found.append("rapidocr")
    if shutil.which("tesseract"):
        found.append("tesseract")
    return found


def read(image: Any, engine_name: str | None = None) -> OcrResult:
    return engine(engine_name).read(image)
