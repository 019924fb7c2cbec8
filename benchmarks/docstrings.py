"""A labelled retrieval set built from the Python standard library's own docstrings.

Real English technical text that every machine with this interpreter has offline: the ``.py``
sources of the standard library (``sysconfig.get_paths()["stdlib"]``), read with ``ast`` (never
imported, so no module runs). Every module, class, function and method docstring is split in two:

- the **query** is the object's dotted name and the docstring's first sentence (its summary
  line), e.g. ``textwrap.shorten: Collapse and truncate the given text to fit in the given
  width.`` — what someone who knows roughly what they want types into a documentation search;
- the **passage** is the rest of the docstring (at most ``MAX_WORDS`` words), which never
  contains the query's sentence.

A query's one relevant passage is the rest of its own docstring. Every passage is in the corpus,
also those whose query is not used, as distractors. See ``benchmarks/README.md`` for why the
labels are fair and what they miss. Standard library only; deterministic for a given Python
version (the corpus's sha256 goes into the results).

    python -m benchmarks.docstrings [--queries 800] [--samples 5]   # statistics and examples
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import random
import re
import statistics
import sys
import sysconfig
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED = 20251203
MAX_WORDS = 150  # passages are cut to their first MAX_WORDS words
MIN_PASSAGE_WORDS = 20
MIN_SUMMARY_WORDS = 5
MAX_SUMMARY_WORDS = 30
# Not documentation of the library itself (test suites, the IDE, generated codec tables, ...).
SKIP_PARTS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "lib2to3",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "encodings",
        "pydoc_data",
        "site-packages",
        "dist-packages",
        "__phello__",
    }
)
_SKIP_FILES = frozenset({"this.py", "antigravity.py", "__hello__.py"})
# A summary ends at the first ". " (or "! ", "? ") that is followed by a capital letter, a quote
# or a bracket, unless the word before is an abbreviation.
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z\"'`(\[*])")
_ABBREVIATIONS = ("e.g", "i.e", "etc", "vs", "cf", "Mr", "Dr", "No")


@dataclass(frozen=True)
class Passage:
    pid: str
    text: str
    source: str  # dotted name of the documented object


@dataclass(frozen=True)
class Query:
    qid: str
    text: str
    relevant: str  # pid of the one relevant passage
    source: str


@dataclass(frozen=True)
class RetrievalSet:
    passages: list[Passage]
    queries: list[Query]
    stats: dict[str, Any]


@dataclass(frozen=True)
class _Doc:
    source: str
    summary: str
    rest: str


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIP_PARTS.intersection(rel.parts) or rel.name in _SKIP_FILES:
            continue
        if rel.parts[0].startswith("config-") or rel.name.startswith("_sysconfigdata"):
            continue
        yield _module_name(rel), path


def _docstrings(module: str, tree: ast.Module) -> Iterator[tuple[str, str]]:
    """(dotted name, cleaned docstring) of the module and every class/function in it."""
    doc = ast.get_docstring(tree)
    if doc:
        yield module, doc

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}.{child.name}"
                text = ast.get_docstring(child)
                if text:
                    yield name, text
                yield from walk(child, name)

    yield from walk(tree, module)


def split_summary(doc: str) -> tuple[str, str]:
    """(first sentence of the first paragraph, everything after it), whitespace collapsed."""
    paragraphs = re.split(r"\n\s*\n", doc.strip(), maxsplit=1)
    first = " ".join(paragraphs[0].split())
    later = " ".join(paragraphs[1].split()) if len(paragraphs) > 1 else ""
    for m in _SENTENCE_END.finditer(first):
        head = first[: m.start()]
        if head.endswith(_ABBREVIATIONS):
            continue
        summary, tail = first[: m.end()], first[m.end() :].strip()
        return summary, " ".join(p for p in (tail, later) if p)
    return first, later


def _collect(root: Path) -> list[_Doc]:
    docs: list[_Doc] = []
    for module, path in _source_files(root):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for source, doc in _docstrings(module, tree):
            summary, rest = split_summary(doc)
            docs.append(_Doc(source, summary, rest))
    return docs


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _words(text: str) -> list[str]:
    return text.split()


def build(
    n_queries: int | None = None, *, seed: int = SEED, root: Path | None = None
) -> RetrievalSet:
    """The corpus (every usable passage) and ``n_queries`` queries drawn from the eligible ones
    (all of them when None), in a fixed order for a given seed and Python version."""
    root = root or stdlib_root()
    docs = _collect(root)
    usable = [d for d in docs if len(_words(d.rest)) >= MIN_PASSAGE_WORDS]
    # One passage per distinct text: docstrings copied between classes (or modules) are kept once.
    passages: list[Passage] = []
    pid_of_text: dict[str, str] = {}
    pid_of_doc: list[str] = []
    for d in usable:
        text = " ".join(_words(d.rest)[:MAX_WORDS])
        key = _norm(text)
        if key not in pid_of_text:
            pid_of_text[key] = f"p{len(passages)}"
            passages.append(Passage(pid_of_text[key], text, d.source))
        pid_of_doc.append(pid_of_text[key])
    # A summary that more than one docstring shares (e.g. an override's copy) is not a query:
    # its label would be arbitrary.
    summary_counts = Counter(_norm(d.summary) for d in docs)
    eligible = [
        Query(f"q{i}", f"{d.source}: {d.summary}", pid, d.source)
        for i, (d, pid) in enumerate(zip(usable, pid_of_doc, strict=True))
        if MIN_SUMMARY_WORDS <= len(_words(d.summary)) <= MAX_SUMMARY_WORDS
        and summary_counts[_norm(d.summary)] == 1
    ]
    if n_queries is not None and n_queries < len(eligible):
        picked = sorted(random.Random(seed).sample(range(len(eligible)), n_queries))
        queries = [eligible[i] for i in picked]
    else:
        queries = eligible
    digest = hashlib.sha256()
    for p in passages:
        digest.update(p.text.encode("utf-8") + b"\0")
    p_words = [len(_words(p.text)) for p in passages]
    q_words = [len(_words(q.text)) for q in queries]
    stats = {
        "source": f"Python {sys.version.split()[0]} standard library sources ({root})",
        "docstrings": len(docs),
        "passages": len(passages),
        "passage_words_mean": statistics.mean(p_words) if p_words else 0.0,
        "passage_words_median": statistics.median(p_words) if p_words else 0.0,
        "passages_cut_at_max_words": sum(w == MAX_WORDS for w in p_words),
        "eligible_queries": len(eligible),
        "queries": len(queries),
        "query_words_mean": statistics.mean(q_words) if q_words else 0.0,
        "modules": len({p.source.split(".")[0] for p in passages}),
        "max_words": MAX_WORDS,
        "seed": seed,
        "corpus_sha256": digest.hexdigest(),
    }
    return RetrievalSet(passages, queries, stats)


def shrink(rs: RetrievalSet, passages: int, *, seed: int = SEED) -> RetrievalSet:
    """A smaller corpus for smoke runs: every query's relevant passage, plus seeded distractors
    up to ``passages`` in all (the queries are unchanged)."""
    needed = {q.relevant for q in rs.queries}
    others = [p for p in rs.passages if p.pid not in needed]
    room = max(passages - len(needed), 0)
    extra = {p.pid for p in random.Random(seed).sample(others, min(room, len(others)))}
    kept = [p for p in rs.passages if p.pid in needed or p.pid in extra]
    words = [len(_words(p.text)) for p in kept]
    stats = {
        **rs.stats,
        "passages": len(kept),
        "passage_words_mean": statistics.mean(words) if words else 0.0,
        "passage_words_median": statistics.median(words) if words else 0.0,
        "passages_cut_at_max_words": sum(w == MAX_WORDS for w in words),
        "shrunk_from_passages": len(rs.passages),
    }
    return RetrievalSet(kept, rs.queries, stats)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.docstrings", description=__doc__)
    p.add_argument("--queries", type=int, default=None)
    p.add_argument("--samples", type=int, default=5)
    args = p.parse_args(argv)
    rs = build(args.queries)
    for key, value in rs.stats.items():
        print(f"{key}: {value}")
    by_pid = {p.pid: p for p in rs.passages}
    for q in random.Random(1).sample(rs.queries, min(args.samples, len(rs.queries))):
        print(f"\nQUERY   {q.text}\nPASSAGE {by_pid[q.relevant].text[:400]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
