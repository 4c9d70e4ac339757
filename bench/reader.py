"""tool-reader figures, side by side in one run.

- every real file in ../shared/data/documents: our conversion (fast path; layout path for PDFs) and
  markitdown's `convert` on the same file, seconds and the ratio ours/markitdown;
- a generated 200-page text PDF with a ruled table every tenth page: pages/s for each path
  (target: at least 200 pages/s on the fast path);
- a generated 10,000-page PDF, uncached: the first part of convert_to_markdown when every page is
  converted first (before) and when pages are converted only until the part is covered (now), side
  by side, with the next part and a check that both give the same text;
- OCR: seconds per A4 page and character error rate on rendered pages whose text is known, and on
  ../shared/data/images/table_fields.png (gold text transcribed by hand), for each engine
  (target: an A4 page under 3 s);
- peak RSS.
Caches are emptied before every timed conversion. Run: `.venv/bin/python bench/reader.py`
(`... bench/reader.py huge` runs only the 10,000-page section).
"""

from __future__ import annotations

import resource
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import TABLE_GOLD, order_free_cer, work_area  # noqa: E402

DATA = REPO.parent / "shared" / "data"
WORK = work_area("reader", DATA)

PAGE_TEXT = [
    "直播电商作为数字经济的重要组成部分，正在深刻改变消费方式。",
    "平台应当建立健全内容审核机制，保障消费者的合法权益。",
    "Live commerce platforms connect producers and consumers in real time.",
    "Regulators published fifteen guidelines between 2016 and 2024.",
    "网络直播平台在整个体系中处于核心地位，提供媒介和技术支持。",
    "Quality control, pricing and flexible supply chains are all improving.",
    "政策文件与行业标准为行业的健康发展提供了明确的指引。",
    "The report recommends clearer obligations for platforms and hosts.",
]


def clear_cache() -> None:
    shutil.rmtree(WORK / "cache", ignore_errors=True)


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def make_long_pdf(path: Path, pages: int = 200) -> None:
    import pymupdf

    document = pymupdf.open()
    for number in range(1, pages + 1):
        page = document.new_page()
        page.insert_text((72, 60), f"Section {number}", fontname="helv", fontsize=18)
        y = 90
        for line in range(30):
            text = PAGE_TEXT[(number + line) % len(PAGE_TEXT)]
            page.insert_text((72, y), text, fontname="helv" if text.isascii() else "china-s", fontsize=10)
            y += 16
        if number % 10 == 0:
            for row in range(4):
                page.draw_line((72, 600 + row * 20), (372, 600 + row * 20))
            for col in range(4):
                page.draw_line((72 + col * 100, 600), (72 + col * 100, 660))
            for r, cells in enumerate([["Year", "Sales", "Share"], ["2023", "4.9", "31%"], ["2024", "5.8", "34%"]]):
                for c, cell in enumerate(cells):
                    page.insert_text((77 + c * 100, 614 + r * 20), cell, fontname="helv", fontsize=10)
    document.save(path)
    document.close()


def make_repeated_pdf(path: Path, pages: int, block: int = 100) -> None:
    """`pages` pages: make_long_pdf's first `block` pages copied over and over (making 10,000 pages one
    by one takes minutes here)."""
    import pymupdf

    make_long_pdf(path.with_suffix(".block.pdf"), block)
    source = pymupdf.open(path.with_suffix(".block.pdf"))
    document = pymupdf.open()
    while document.page_count < pages:
        document.insert_pdf(source, to_page=min(block, pages - document.page_count) - 1)
    document.save(path, garbage=1)
    document.close()
    source.close()


def make_scanned_page_png(dpi: int = 200) -> bytes:
    import pymupdf

    document = pymupdf.open()
    page = document.new_page(width=595, height=842)  # A4 in points
    y = 80
    for line in PAGE_TEXT:
        font = "helv" if line.isascii() else "china-s"
        page.insert_text((60, y), line, fontname=font, fontsize=12)
        y += 30
    png = page.get_pixmap(dpi=dpi).tobytes("png")
    document.close()
    return png


def convert(path: str, **options):
    """What convert_to_markdown does: the input opened through the input policy, then converted."""
    from servers.reader import engine
    from shared.inputs import open_input

    with open_input(path) as item:
        return engine.convert(item, **options)


def huge_pdf(pages: int = 10_000) -> None:
    """The first part of a huge uncached PDF: whole conversion (before) against page-lazy (now)."""
    from servers.reader import engine
    from servers.reader.server import _content_budget
    from shared import budget

    print(f"\n== generated {pages:,}-page PDF, uncached: the first part of convert_to_markdown ==")
    path = WORK / "huge.pdf"
    _, made = timed(make_repeated_pdf, path, pages)
    window = engine.Window(0, None, _content_budget())  # a call with the default output budget
    clear_cache()
    whole, before = timed(convert, str(path))
    first_before = budget.page_of(whole.markdown, 0, None, window.max_tokens)
    clear_cache()
    lazy, now = timed(convert, str(path), window=window)
    first_now = budget.page_of(lazy.markdown, 0, None, window.max_tokens)
    following = engine.Window(first_now.end_index, None, window.max_tokens)
    _, next_part = timed(convert, str(path), window=following)
    same = first_now.text == first_before.text and first_now.end_index == first_before.end_index
    print(f"(PDF made in {made:.1f} s; part = {window.max_tokens:,} tokens, {first_now.end_index:,} characters)")
    print(f"{'':44s} {'seconds':>8s} {'pages converted':>16s}")
    print(f"{'before: every page, then the part cut':44s} {before:8.2f} {len(whole.pages or []):16,d}")
    print(f"{'now: pages until the part is covered':44s} {now:8.2f} {len(lazy.pages or []):16,d}")
    print(f"{'now: the next part (start_index=end)':44s} {next_part:8.2f} {'(cached + new)':>16s}")
    print(f"same first part: {'yes' if same else 'NO'}; before/now time: {before / now:.0f}x")


def main() -> None:
    if sys.argv[1:] == ["huge"]:
        huge_pdf()
        shutil.rmtree(WORK, ignore_errors=True)
        return
    from markitdown import MarkItDown

    from shared import ocr

    markitdown = MarkItDown(enable_plugins=False)
    print("== real documents (../shared/data/documents) ==")
    if not (DATA / "documents").exists():
        print(f"skipped: {DATA / 'documents'} is missing (it is not part of a user's clone)")
    else:
        print(f"{'file':40s} {'format':6s} {'ours s':>7s} {'layout s':>8s} {'markitdown s':>12s} {'ours/md':>8s}"
              f" {'chars':>7s}  ok")
        for path in sorted((DATA / "documents").iterdir()):
            clear_cache()
            document, ours = timed(convert, str(path))
            layout = ""
            if document.format == "pdf":
                clear_cache()
                _, seconds = timed(convert, str(path), mode="layout")
                layout = f"{seconds:.2f}"
            try:
                _, theirs = timed(markitdown.convert, str(path))
                ratio = f"{ours / theirs:.2f}"
                theirs_text = f"{theirs:.2f}"
            except Exception as exc:  # markitdown's own failure is a figure too
                theirs_text, ratio = f"fail:{type(exc).__name__}", "-"
            pages = ""
            if document.total_pages:
                pages = f" ({document.total_pages} p, {document.total_pages / ours:.0f} p/s)"
            print(f"{path.name[:40]:40s} {document.format:6s} {ours:7.2f} {layout:>8s} {theirs_text:>12s} {ratio:>8s}"
                  f" {len(document.markdown):7d}  yes{pages}")

    print("\n== generated 200-page PDF (text, a ruled table every 10th page) ==")
    long_pdf = WORK / "long.pdf"
    make_long_pdf(long_pdf)
    clear_cache()
    document, fast = timed(convert, str(long_pdf))
    _, cached = timed(convert, str(long_pdf))
    clear_cache()
    _, layout = timed(convert, str(long_pdf), mode="layout")
    _, theirs = timed(markitdown.convert, str(long_pdf))
    tables = document.markdown.count("|Year|Sales|Share|")
    print(f"fast path:   {200 / fast:7.0f} pages/s ({fast:.2f} s, {tables} of 20 tables found)  target >= 200 pages/s")
    print(f"layout path: {200 / layout:7.0f} pages/s ({layout:.2f} s)")
    print(f"markitdown:  {200 / theirs:7.0f} pages/s ({theirs:.2f} s); fast path / markitdown time = "
          f"{fast / theirs:.2f}")
    print(f"second read of the same PDF from the conversion cache: {cached * 1000:.0f} ms")

    print("\n== OCR ==")
    page_png = make_scanned_page_png()
    gold_page = "".join(PAGE_TEXT)
    table_png = (DATA / "images" / "table_fields.png").read_bytes() if (DATA / "images").exists() else None
    for name in ocr.available_engines():
        load_started = time.perf_counter()
        ocr.engine(name)
        load = time.perf_counter() - load_started
        ocr.read(page_png, name)  # warm
        result = ocr.read(page_png, name)
        line = (f"{name:10s} load {load:5.2f} s | A4 page at 200 dpi: {result.seconds:5.2f} s, CER "
                f"{order_free_cer(result.text, gold_page) * 100:5.1f} % (target < 3 s)")
        if table_png is not None:
            table = ocr.read(table_png, name)
            line += (f" | table_fields.png: {table.seconds:5.2f} s, CER "
                     f"{order_free_cer(table.text, TABLE_GOLD) * 100:5.1f} %")
        print(line)
    scanned = WORK / "scanned.pdf"
    import pymupdf

    document_pdf = pymupdf.open()
    for _ in range(3):
        page = document_pdf.new_page(width=595, height=842)
        page.insert_image(page.rect, stream=page_png)
    document_pdf.save(scanned)
    document_pdf.close()
    clear_cache()
    converted, seconds = timed(convert, str(scanned))
    print(f"scanned 3-page PDF through convert_to_markdown (auto engine): {seconds / 3:.2f} s per page, OCR pages "
          f"{converted.ocr_pages}")
    huge_pdf()

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak:.0f} MB")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
