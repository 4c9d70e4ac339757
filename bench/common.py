"""Gold text and error measures shared by the benchmarks."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path


def work_area(name: str, *roots: Path) -> Path:
    """A temporary folder for one run: the allowed root (with `roots`) and the home of the cache."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    os.environ["TOOLSUITE_ROOTS"] = os.pathsep.join(str(root) for root in (*roots, work))
    os.environ["TOOLSUITE_CACHE_DIR"] = str(work / "cache")
    return work

# Every cell of table_fields.png, read off the image, in reading order.
TABLE_GOLD = (
    "论文名称 领域（场景） query数量 任务 输入 类型 评价指标 数据集example 其他 "
    "drbench 办公（企业） 15个 没有特定划分 query文本+文档（办公环境） report生成 "
    "文本query：How can Lee's Market leverage FSMA 204 regulations to enhance food safety and customer trust? "
    "附加文件：pdf、ppt等文档 114个insight 设定了企业和使用者的persona"
)


def folder_size(path: Path) -> int:
    """Bytes in the files under `path` (an index on disk)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def normalise(text: str) -> str:
    table = str.maketrans({"（": "(", "）": ")", "：": ":", "，": ",", "。": ".", "、": ",", "’": "'", "‘": "'"})
    return "".join(text.translate(table).split())


def order_free_cer(found: str, gold: str) -> float:
    """Character error rate that ignores reading order: the edits needed between the two multisets of
    characters (a substitution counts once). It is the lower bound of Levenshtein over all orderings,
    fair for tables, where engines order cells differently."""
    got, want = Counter(normalise(found)), Counter(normalise(gold))
    missing = sum((want - got).values())
    extra = sum((got - want).values())
    return max(missing, extra) / max(sum(want.values()), 1)

