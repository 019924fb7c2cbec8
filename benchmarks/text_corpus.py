"""The text corpus of the cross-database comparison: distinct paragraphs of Python docstrings.

Real English technical prose that every machine with this interpreter has offline: the docstrings of
the standard library's ``.py`` sources (``sysconfig.get_paths()["stdlib"]``) and of the
interpreter's site-packages (``sysconfig.get_paths()["purelib"]``; ``site_packages`` can name more,
e.g. ``.venv-bench``'s), read with ``ast`` — nothing is imported, so no module runs. Files are
chosen as ``benchmarks.docstrings`` chooses them (its test suites, IDLE, tkinter, generated codecs,
... are left out; for site-packages the same rules drop every ``test``/``tests`` directory). A
docstring is cut into paragraphs at blank lines; a paragraph is kept when, in this order (the first
rule that fails names the drop in the manifest):

- ``doctest``: no line starts with ``>>>`` (an example session with its output);
- ``field_list``: no line is a reST field (``:param x:``, ``:returns:``, ``:raises E:``);
- ``rule_line``: no line is only punctuation such as ``------`` or ``=====  ====`` (section
  underlines, simple-table borders, grid-table borders);
- ``table_row``: no line both starts and ends with ``|`` (grid and markdown table rows);
- ``directive``: no line starts with ``.. `` (``.. note::``, ``.. versionadded::``, targets);
- ``literal_block``: not every line is indented (after ``ast``'s dedent, an indented paragraph is
  a literal/code block or a continuation of a list, not a paragraph of its own);
- ``section_header``: its first line is not a docstring section header alone (``Args:``,
  ``Returns``, ``Examples:``, ...), whose paragraph is then an argument list;
- ``param_entry``: its first line is not a numpydoc entry (``x : int``, ``a, b : array_like``);
- ``length``: with whitespace collapsed to single spaces, it has ``MIN_WORDS`` to ``MAX_WORDS``
  words;
- ``not_prose``: at least ``MIN_ALPHA_SHARE`` of its words are alphabetic (letters, possibly
  with inner ``'`` or ``-``, once surrounding punctuation is stripped): code, paths, numbers,
  URLs and identifiers like ``foo_bar()`` are not.

Kept paragraphs (whitespace collapsed, text otherwise unchanged) are deduplicated exactly (a copy
keeps the source of its first occurrence in file order: stdlib first, then each site-packages in the
order given, paths sorted), sorted by text, and shuffled with a seeded ``random.Random``: the order
depends only on the set of texts and the seed, never on the file system's order. ``limit`` cuts that
order.

Size (CPython 3.11.7, stdlib + this repository's ``.venv``, 8,085 files): 116k paragraphs, of which
40.9k distinct ones are kept (mean 21 words, median 14) — enough for a 10k set, not for 100k. Adding
``.venv-bench``'s site-packages (torch, transformers, scipy, sympy, ...: 19.5k files) gives an
estimated ~110k (extrapolated from a 3,000-file sample). The scan takes ~22 s of CPU for 8k files,
so the sorted set is cached in ``benchmarks/.cache/`` (``text-corpus-<fingerprint>.jsonl.gz`` and
its manifest ``.json``), keyed by a fingerprint of what was scanned: the Python build, the roots,
every distribution installed in them (``name==version``), ``max_files`` and the rules. Files that
belong to no distribution (or are edited in place) are not in the fingerprint.

    python -m benchmarks.text_corpus [--max-files N] [--site-packages DIR ...] [--samples 5]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import importlib.metadata
import inspect
import json
import random
import re
import sys
import sysconfig
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import docstrings

SEED = 20260611
MIN_WORDS = 8
MAX_WORDS = 200
MIN_ALPHA_SHARE = 0.6
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
# Bump when a rule below changes: the fingerprint (and so the cache) must change with it.
_RULES_VERSION = 1

_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t]*\n)+")
_FIELD = re.compile(r"^\s*:[A-Za-z_][^:`\n]*:(\s|$)")
_RULE_LINE = re.compile(r"^\s*[-=~^*+#_:.`'\"|]{3,}[-=~^*+#_:.`'\"| ]*$")
_SECTION_HEADER = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns?|Yields?|Raises|Examples?|Attributes|"
    r"Keyword Args|Keyword Arguments|Other Parameters|See Also|References|Methods|Warns|"
    r"Usage|Options)\s*:?\s*$"
)
_PARAM_ENTRY = re.compile(r"^\*{0,2}\w+(\s*,\s*\*{0,2}\w+)*\s+:(\s|$)")
_ALPHA_WORD = re.compile(r"[A-Za-z]+(?:['\u2019-][A-Za-z]+)*")
_STRIP = "\"'`([{<*_.,;:!?)]}>"


@dataclass(frozen=True)
class Corpus:
    texts: list[str]
    sources: list[str]  # "stdlib" or the site-packages top-level package the text came from
    manifest: dict[str, Any]


class Progress:
    """A progress bar on stderr: tqdm's when it is installed, else a line every ``_EVERY_S``."""

    _EVERY_S = 15.0

    def __init__(self, total: int, desc: str, *, unit: str = "it", enabled: bool = True) -> None:
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.done = 0
        self._started = self._printed = time.monotonic()
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                print(f"{desc}: {total} {unit}", file=sys.stderr)
            else:
                self._bar = tqdm(total=total, desc=desc, unit=unit, smoothing=0.05)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.total:
            self._line()

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.monotonic() - self._printed >= self._EVERY_S:
            self._line()

    def _line(self) -> None:
        self._printed = time.monotonic()
        rate = self.done / max(self._printed - self._started, 1e-9)
        print(
            f"{self.desc}: {self.done}/{self.total} {self.unit} ({rate:.0f} {self.unit}/s)",
            file=sys.stderr,
        )


def site_packages_root() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def drop_reason(paragraph: str) -> str | None:
    """Why a raw paragraph (lines as in the cleaned docstring) is not prose; None to keep it."""
    lines = [line for line in paragraph.splitlines() if line.strip()]
    if not lines:
        return "length"
    checks = (
        ("doctest", lambda s: s.lstrip().startswith(">>>")),
        ("field_list", lambda s: _FIELD.match(s) is not None),
        ("rule_line", lambda s: _RULE_LINE.match(s) is not None),
        ("table_row", lambda s: len(s.strip()) > 1 and s.strip()[0] == s.strip()[-1] == "|"),
        ("directive", lambda s: s.lstrip().startswith(".. ")),
    )
    for reason, hit in checks:
        if any(hit(line) for line in lines):
            return reason
    if all(line[0] in " \t" for line in lines):
        return "literal_block"
    if _SECTION_HEADER.match(lines[0].strip()):
        return "section_header"
    if _PARAM_ENTRY.match(lines[0]):
        return "param_entry"
    words = paragraph.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return "length"
    alpha = sum(_ALPHA_WORD.fullmatch(w.strip(_STRIP)) is not None for w in words)
    if alpha < MIN_ALPHA_SHARE * len(words):
        return "not_prose"
    return None


def paragraphs(doc: str) -> Iterator[tuple[str | None, str]]:
    """(why it is dropped, or None to keep it; its text, whitespace collapsed) of each paragraph
    of a cleaned docstring (``ast.get_docstring``)."""
    for raw in _PARAGRAPH_BREAK.split(doc.strip("\n")):
        yield drop_reason(raw), " ".join(raw.split())


def _files(stdlib: Path, site_packages: Sequence[Path]) -> list[tuple[str, str, Path]]:
    """(source, module, path) of every file to read: stdlib first, then each site-packages."""
    out = [("stdlib", module, path) for module, path in docstrings._source_files(stdlib)]
    seen = {stdlib.resolve()}
    for root in site_packages:
        if root.resolve() in seen:
            continue
        seen.add(root.resolve())
        files = docstrings._source_files(root)
        out += [(module.split(".")[0], module, path) for module, path in files]
    return out


def _spread(files: list[Any], max_files: int | None) -> list[Any]:
    """At most ``max_files`` files, evenly spaced over the sorted list, so a small scan still
    reaches both roots and many packages."""
    if max_files is None or max_files >= len(files):
        return files
    return [files[i * len(files) // max_files] for i in range(max_files)]


def distributions(site_packages: Sequence[Path]) -> list[str]:
    """``name==version`` of every distribution installed in ``site_packages``, sorted."""
    found = set()
    for dist in importlib.metadata.distributions(path=[str(p) for p in site_packages]):
        name = dist.metadata["Name"]
        if name:
            found.add(f"{name}=={dist.version}")
    return sorted(found, key=str.lower)


def fingerprint(stdlib: Path, site_packages: Sequence[Path], max_files: int | None) -> str:
    """What the scan's result depends on (see the module docstring), hashed."""
    # This module reuses docstrings.py's file selection: a change there must miss the cache too.
    reused = "".join(
        inspect.getsource(f) for f in (docstrings._source_files, docstrings._docstrings)
    ) + repr((sorted(docstrings.SKIP_PARTS), sorted(docstrings._SKIP_FILES)))
    key = {
        "rules": _RULES_VERSION,
        "words": [MIN_WORDS, MAX_WORDS, MIN_ALPHA_SHARE],
        "reused": hashlib.sha256(reused.encode()).hexdigest(),
        "python": sys.version,
        "implementation": sys.implementation.name,
        "roots": [str(stdlib), *map(str, site_packages)],
        "distributions": distributions(site_packages),
        "max_files": max_files,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def texts_sha256(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def _parse(path: Path) -> ast.Module | None:
    try:
        source = path.read_text(encoding="utf-8")
        with warnings.catch_warnings():  # old code's invalid escapes: noise, not our concern
            warnings.simplefilter("ignore")
            return ast.parse(source, filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError, RecursionError, MemoryError):
        return None


def scan(
    stdlib: Path,
    site_packages: Sequence[Path],
    *,
    max_files: int | None = None,
    progress: bool = True,
) -> tuple[list[str], list[str], dict[str, Any]]:
    """The distinct kept paragraphs sorted by text, their sources, and the scan's statistics."""
    started = time.process_time()
    listed = _files(stdlib, site_packages)
    files = _spread(listed, max_files)
    first_source: dict[str, str] = {}
    dropped: Counter[str] = Counter()
    parsed = docs = seen = 0
    with Progress(len(files), "reading docstrings", unit="files", enabled=progress) as bar:
        for source, module, path in files:
            bar.update(1)
            tree = _parse(path)
            if tree is None:
                continue
            parsed += 1
            for _, doc in docstrings._docstrings(module, tree):
                docs += 1
                for reason, text in paragraphs(doc):
                    seen += 1
                    if reason is None:
                        first_source.setdefault(text, source)
                    else:
                        dropped[reason] += 1
    texts = sorted(first_source)
    kept = seen - sum(dropped.values())
    stats = {
        "files_listed": len(listed),
        "files_scanned": len(files),
        "files_parsed": parsed,
        "docstrings": docs,
        "paragraphs_seen": seen,
        "dropped": dict(sorted(dropped.items())),
        "duplicates": kept - len(texts),
        "scan_cpu_seconds": round(time.process_time() - started, 2),
    }
    return texts, [first_source[t] for t in texts], stats


def build(
    limit: int | None = None,
    *,
    seed: int = SEED,
    max_files: int | None = None,
    stdlib: Path | None = None,
    site_packages: Sequence[Path] | None = None,
    cache_dir: Path = CACHE_DIR,
    progress: bool = True,
) -> Corpus:
    """The corpus in its seeded order (the first ``limit`` texts when given), read from the
    cache when this environment was scanned before, else scanned and cached. ``site_packages``
    defaults to this interpreter's; ``max_files`` reads that many files spread evenly over all
    of them (a quick partial corpus, for tests)."""
    stdlib = stdlib or docstrings.stdlib_root()
    site_packages = list(site_packages) if site_packages is not None else [site_packages_root()]
    fp = fingerprint(stdlib, site_packages, max_files)
    body, head = cache_dir / f"text-corpus-{fp}.jsonl.gz", cache_dir / f"text-corpus-{fp}.json"
    cached = _load(body, head)
    if cached is None:
        texts, sources, stats = scan(stdlib, site_packages, max_files=max_files, progress=progress)
        manifest: dict[str, Any] = {
            "what": "distinct paragraphs of Python docstrings (benchmarks/text_corpus.py)",
            "python": sys.version.split()[0],
            "python_build": sys.version,
            "roots": {"stdlib": str(stdlib), "site_packages": [str(p) for p in site_packages]},
            "distributions": distributions(site_packages),
            "max_files": max_files,
            "rules": {
                "version": _RULES_VERSION,
                "min_words": MIN_WORDS,
                "max_words": MAX_WORDS,
                "min_alpha_share": MIN_ALPHA_SHARE,
            },
            **stats,
            "paragraphs": len(texts),
            "counts_by_source": dict(sorted(Counter(sources).items())),
            "corpus_sha256": texts_sha256(texts),  # of the sorted set: independent of the seed
            "fingerprint": fp,
        }
        _save(body, head, texts, sources, manifest)
    else:
        texts, sources, manifest = cached
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    order = order[:limit] if limit is not None else order
    picked = [texts[i] for i in order]
    extra = {
        "seed": seed,
        "limit": limit,
        "texts": len(picked),
        "texts_sha256": texts_sha256(picked),  # of the returned texts, in their order
        "cache": str(body),
        "cache_hit": cached is not None,
    }
    return Corpus(picked, [sources[i] for i in order], {**manifest, **extra})


def _save(
    body: Path, head: Path, texts: list[str], sources: list[str], manifest: dict[str, Any]
) -> None:
    body.parent.mkdir(parents=True, exist_ok=True)
    tmp = body.with_suffix(".tmp")
    # mtime=0: the same corpus gives the same bytes.
    with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for text, source in zip(texts, sources, strict=True):
            line = json.dumps({"text": text, "source": source}, ensure_ascii=False)
            gz.write(line.encode("utf-8") + b"\n")
    tmp.replace(body)
    # The manifest goes last: it is what marks the body complete.
    tmp = head.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(head)


def _load(body: Path, head: Path) -> tuple[list[str], list[str], dict[str, Any]] | None:
    if not (body.exists() and head.exists()):
        return None
    manifest: dict[str, Any] = json.loads(head.read_text(encoding="utf-8"))
    texts: list[str] = []
    sources: list[str] = []
    with gzip.open(body, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts.append(row["text"])
            sources.append(row["source"])
    if texts_sha256(texts) != manifest.get("corpus_sha256"):
        return None  # torn or edited by hand: scan again
    return texts, sources, manifest


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.text_corpus", description=__doc__)
    p.add_argument("--max-files", type=int, default=None)
    p.add_argument(
        "--site-packages",
        type=Path,
        action="append",
        help="a site-packages to read (repeatable; default: this interpreter's)",
    )
    p.add_argument("--samples", type=int, default=5)
    args = p.parse_args(argv)
    corpus = build(max_files=args.max_files, site_packages=args.site_packages)
    for key, value in corpus.manifest.items():
        if key not in ("distributions", "counts_by_source"):
            print(f"{key}: {value}")
    top = Counter(corpus.sources).most_common(15)
    print("top sources:", ", ".join(f"{s} {c}" for s, c in top))
    for text, source in list(zip(corpus.texts, corpus.sources, strict=True))[: args.samples]:
        print(f"\n[{source}] {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
