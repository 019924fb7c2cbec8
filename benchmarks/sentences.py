"""Deterministic English texts for the embedding benchmarks: short search queries, sentences of
10-30 words, and a fixed set for the vector-agreement check.

Standard library only: the reference peer (``peer_sentence_transformers``, run in its own venv,
without vecstore) and the vecstore side (``bench_embed``) draw from the same generator, so both
embed texts of the same shape. Every text a pool hands out is distinct, so no pass is served from
the server's query cache.
"""

from __future__ import annotations

import random
from collections.abc import Callable

SEED = 20251122


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


_ADJ = _words(
    "old red small quiet cheap reliable wooden electric broken modern portable heavy bright "
    "narrow warm noisy organic rusty digital spare local fresh frozen vintage leaky"
)
_NOUN = _words(
    "bicycle laptop kettle garden printer router kitchen faucet backpack camera sofa window "
    "engine guitar thermostat bookshelf fridge tent lamp keyboard mattress chimney boat roof "
    "lawnmower microwave passport invoice contract spreadsheet battery charger"
)
_VERB = _words(
    "fix clean replace paint repair store install insure recycle sell measure protect "
    "upgrade move assemble test"
)
_PROBLEM = _words(
    "make a clicking noise|keep turning off|smell like burning plastic|run so slowly|"
    "drain the battery overnight|leak after rain|refuse to start in the cold|"
    "show a blinking orange light|lose its settings",
    "|",
)
_PLACE = _words(
    "the city centre|the train station|my office|the old harbour|the university campus|"
    "a small village|the airport|the suburbs|the river",
    "|",
)
_ACTIVITY = _words(
    "beginners|long trips|small apartments|rainy weather|students|winter camping|"
    "working from home|families with kids|tight budgets",
    "|",
)
_PERSON = _words(
    "my neighbour|the landlord|a young engineer|our team lead|the old farmer|a nurse|"
    "the new intern|my grandmother|a delivery driver|the shop owner|the committee|a tourist",
    "|",
)
_PAST = _words(
    "bought|repaired|painted|sold|borrowed|returned|inspected|replaced|carried|cleaned|"
    "photographed|insured|ordered|assembled",
    "|",
)
_WHEN = _words(
    "last week|on a rainy Tuesday|after the storm|before the holidays|early this morning|"
    "in the middle of the night|two days ago|during the summer sale",
    "|",
)
_WHY = _words(
    "because the old one had stopped working|so that the family could use it again|"
    "although nobody had asked for it|while the children were at school|"
    "after reading several reviews online|since the warranty was about to expire|"
    "even though the price had doubled since spring|to avoid paying for another repair",
    "|",
)
_AFTER = _words(
    "and then wrote a short note about it|but forgot to keep the receipt|"
    "and asked for advice on the local forum|and was surprised by how simple it was|"
    "but the instructions were missing two pages|and shared photos with the whole street",
    "|",
)


def _pick(rng: random.Random, words: tuple[str, ...] | list[str]) -> str:
    return words[rng.randrange(len(words))]


def _query(rng: random.Random) -> str:
    a, n, n2 = _pick(rng, _ADJ), _pick(rng, _NOUN), _pick(rng, _NOUN)
    templates: list[Callable[[], str]] = [
        lambda: f"how to {_pick(rng, _VERB)} a {a} {n}",
        lambda: f"best {a} {n} for {_pick(rng, _ACTIVITY)}",
        lambda: f"why does my {n} {_pick(rng, _PROBLEM)}",
        lambda: f"{a} {n} repair near {_pick(rng, _PLACE)}",
        lambda: f"difference between a {n} and a {n2}",
        lambda: f"where can I {_pick(rng, _VERB)} my {a} {n}",
        lambda: f"{n} {_pick(rng, _VERB)} tips for {_pick(rng, _ACTIVITY)}",
        lambda: f"is it safe to {_pick(rng, _VERB)} a {n} myself",
    ]
    return templates[rng.randrange(len(templates))]()


def _sentence(rng: random.Random) -> str:
    while True:
        parts = [
            _pick(rng, _PERSON).capitalize(),
            _pick(rng, _PAST),
            f"the {_pick(rng, _ADJ)} {_pick(rng, _NOUN)}",
        ]
        if rng.random() < 0.6:
            parts.append(f"near {_pick(rng, _PLACE)}")
        if rng.random() < 0.6:
            parts.append(_pick(rng, _WHEN))
        if rng.random() < 0.5:
            parts.append(_pick(rng, _WHY))
        if rng.random() < 0.4:
            parts.append(_pick(rng, _AFTER))
        text = " ".join(parts) + "."
        if 10 <= len(text.split()) <= 30:
            return text


class TextPool:
    """Distinct texts of one kind, handed out once each, in a fixed order for a given seed."""

    def __init__(self, kind: str, seed: int = SEED) -> None:
        makers = {"query": _query, "sentence": _sentence}
        if kind not in makers:
            raise ValueError(f"kind must be one of {sorted(makers)}, got {kind!r}")
        self._make = makers[kind]
        self._rng = random.Random(f"{kind}:{seed}")
        self._seen: set[str] = set()

    def take(self, n: int) -> list[str]:
        out: list[str] = []
        misses = 0
        while len(out) < n:
            text = self._make(self._rng)
            if text in self._seen:
                misses += 1
                if misses > 100 * (n + 100):
                    raise RuntimeError(f"the text generator ran dry after {len(self._seen)}")
                continue
            self._seen.add(text)
            out.append(text)
        return out


# For the vector-agreement check: varied length, case, punctuation, digits, accents; the last is
# longer than the model's 256-token budget, so both sides must truncate it the same way.
AGREEMENT_TEXTS: tuple[str, ...] = (
    "hello world",
    "How do I reset my router password?",
    "best hiking boots for wide feet",
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner while people walk past.",
    "Quarterly revenue grew 12% year over year, driven by strong demand in Europe.",
    "python list comprehension vs generator expression performance",
    "Café Müller serves crème brûlée and naïve façades — déjà vu!",
    "ERROR 503: upstream connect error or disconnect/reset before headers",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "cheap flights from Berlin to Lisbon in March",
    "The patient presented with acute abdominal pain and a mild fever of 38.2 °C.",
    "vector databases store embeddings and answer nearest-neighbour queries",
    "What time does the pharmacy on Main Street close on Sundays?",
    "She sold seashells by the seashore, and the shells she sold were surely seashells.",
    "Install the package, set the environment variable, then restart the service.",
    "1 2 3 4 5 6 7 8 9 10",
    "I can't believe it's not butter!!!",
    " ".join(
        _words(
            "The committee met on Thursday to review the annual budget, the hiring plan and "
            "the proposal to move the archive to the new building by the river."
        )
        * 2
    ),
    " ".join(
        _words(
            "Long documents are cut at the model's token budget, so everything past the first "
            "two hundred and fifty six word pieces must be ignored by both implementations alike."
        )
        * 8
    ),
)
