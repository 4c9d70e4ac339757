"""tool-vqa figures.

- OCR character error rate and seconds on ../shared/data/images/table_fields.png (gold text read off
  the image) and on generated images with known Chinese and English text, through the evidence path
  the VQA tools use (targets: CER under 5 % on the table screenshot);
- evidence time per photo in ../shared/data/images (target: under 1.5 s per photo);
- request construction: size sent per image and the whole request, against the original file.
Run: `.venv/bin/python bench/vision.py`.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import TABLE_GOLD, order_free_cer, work_area  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "images"
WORK = work_area("vision", DATA)

GENERATED = {
    "zh_en_sign.png": ["直播电商高质量发展报告", "Quarterly revenue grew 12 percent"],
    "zh_paragraph.png": ["网络直播平台在整个体系中处于核心地位", "平台应当建立健全内容审核机制"],
    "en_paragraph.png": ["Regulators published fifteen guidelines", "between 2016 and 2024 for platforms"],
}


def make_text_image(path: Path, lines: list[str]) -> None:
    import pymupdf

    document = pymupdf.open()
    page = document.new_page(width=520, height=40 + 36 * len(lines))
    for index, line in enumerate(lines):
        page.insert_text((20, 40 + 36 * index), line, fontname="helv" if line.isascii() else "china-s", fontsize=20)
    page.get_pixmap(matrix=pymupdf.Matrix(2, 2)).save(str(path))
    document.close()


def main() -> None:
    from shared import evidence, images, ocr
    from shared.image_answers import build_messages
    from shared.image_answers import prepare as prepare_opened
    from shared.inputs import open_input
    from shared.models import image_part

    def prepare(source: str, for_model: bool):
        with open_input(source) as item:
            return prepare_opened(item, for_model=for_model)

    started = time.perf_counter()
    ocr.engine()
    print(f"OCR engine: {ocr.engine().name} (loaded in {time.perf_counter() - started:.2f} s); "
          f"available: {', '.join(ocr.available_engines())}\n")

    print("== OCR through the evidence path ==")
    cases: list[tuple[Path, str]] = []
    if (DATA / "table_fields.png").exists():
        cases.append((DATA / "table_fields.png", TABLE_GOLD))
    for name, lines in GENERATED.items():
        make_text_image(WORK / name, lines)
        cases.append((WORK / name, "".join(lines)))
    for path, gold in cases:
        with open_input(str(path)) as item:
            image = images.decode(item)
        found = evidence.gather(image)
        cer = order_free_cer(found.ocr_text, gold)
        target = "  (target < 5 %)" if path.name == "table_fields.png" else ""
        print(f"{path.name:22s} CER {cer * 100:5.1f} %  OCR {found.seconds['ocr']:.2f} s{target}")

    print("\n== evidence per photo (target < 1.5 s) ==")
    photos = sorted(DATA.glob("photo*.jpg")) if DATA.exists() else []
    if not photos:
        print(f"skipped: {DATA} is missing (it is not part of a user's clone)")
    for photo in photos:
        begun = time.perf_counter()
        prepared = prepare(str(photo), for_model=True)
        total = time.perf_counter() - begun
        ev = prepared.evidence
        print(f"{photo.name:12s} {ev.width}x{ev.height}  evidence+encoding {total:.2f} s  ({ev.seconds})  faces "
              f"{len(ev.faces)}  OCR lines {len(ev.ocr_lines)}")

    print("\n== request construction (what is sent to the vision model) ==")
    for path in [*photos, *(p for p, _ in cases)]:
        prepared = prepare(str(path), for_model=True)
        messages = build_messages("What is shown?", [prepared])
        body = len(json.dumps({"model": "m", "messages": messages}))
        part = image_part(prepared.payload, prepared.mime)
        print(f"{path.name:22s} original {path.stat().st_size / 1024:7.0f} KB {prepared.image.width}x"
              f"{prepared.image.height} -> sent {prepared.mime} {prepared.sent_width}x{prepared.sent_height} "
              f"{len(prepared.payload) / 1024:6.0f} KB (base64 {len(part['image_url']['url']) / 1024:6.0f} KB); "
              f"request {body / 1024:6.0f} KB")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
