"""Project 5's parallel corpus: generated jargon -> plain-English pairs and their four splits.

Introduced in lesson 5.6 (``m05-l06``). :func:`build_corpus` samples meanings from the grammar
in :mod:`~neuralarch.projects.translator.grammar`, writes each as one jargon sentence (a random
template and random formats for its amounts and dates) and one plain sentence, and deals them
into four splits that each answer one question:

* ``train`` and ``val``: seen combinations, seen amounts (``val`` measures fit, not transfer);
* ``test_combos``: *unseen combinations*: every (intent, template, entity, direction) of this
  split is held out of training, although each part of it occurs there with other partners;
* ``test_amounts``: *unseen amounts*: every amount, percentage, rate and level in this split is a
  number string that no training sentence contains as an amount.

Held-out combinations and amounts are chosen by hashing them with the seed, so the same seed
always gives the same corpus, and the splits are disjoint by construction (tests check it).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from pydantic import Field

from neuralarch.config import ArchConfig
from neuralarch.projects.translator.grammar import (
    BANKS,
    CURRENCIES,
    CURRENCY_NAMES,
    DIRECTIONS,
    INDICES,
    INTENTS,
    MONTHS,
    QUARTER_WORDS,
    REACTION_SOURCES,
    REACTION_TARGET,
    SESSIONS,
    Intent,
    entities,
    pick_direction,
)

SPLITS = ("train", "val", "test_combos", "test_amounts")


class CorpusConfig(ArchConfig):
    """How many pairs each split holds, what is held out, and the seed that fixes everything."""

    n_train: int = Field(6000, gt=0, description="training pairs")
    n_val: int = Field(300, gt=0, description="validation pairs (seen combinations and amounts)")
    n_test: int = Field(300, gt=0, description="pairs in each of the two test splits")
    combo_holdout: float = Field(0.15, gt=0, lt=1, description="share of combinations held out")
    amount_holdout: float = Field(0.2, gt=0, lt=1, description="share of amounts held out")
    reaction_prob: float = Field(0.3, ge=0, le=1, description="chance of a share-price clause")
    seed: int = Field(0, ge=0, description="fixes the corpus: holdouts and every sample")


@dataclass(frozen=True)
class Pair:
    """One parallel sentence pair and the meaning it was generated from."""

    source: str  # financial jargon
    target: str  # plain English
    intent: str
    template: int  # index into the intent's jargon templates
    entity: str  # jargon name of the company, index, bank or currency pair
    direction: str  # "up" or "down"
    amounts: tuple[str, ...]  # the amount strings in the sentence (what test_amounts holds out)

    @property
    def combo(self) -> tuple[str, int, str, str]:
        """The (intent, template, entity, direction) combination that test_combos holds out."""
        return (self.intent, self.template, self.entity, self.direction)


def _held_out(seed: int, what: str, share: float) -> bool:
    """Deterministically put ``share`` of all keys in the held-out set, by hashing them."""
    digest = hashlib.sha256(f"{seed}/{what}".encode()).digest()
    return int.from_bytes(digest[:4], "little") < share * 2**32


def all_combos() -> list[tuple[str, int, str, str]]:
    """Every (intent, template, entity, direction) combination the grammar can produce."""
    return [(intent.name, t, entity, d) for intent in INTENTS
            for t in range(len(intent.sources)) for entity in entities(intent.entity_kind)
            for d in DIRECTIONS]


def held_out_combos(config: CorpusConfig) -> set[tuple[str, int, str, str]]:
    """The combinations reserved for ``test_combos`` (never generated for training)."""
    return {c for c in all_combos() if _held_out(config.seed, f"combo:{c}", config.combo_holdout)}


def is_held_out_amount(value: str, config: CorpusConfig) -> bool:
    """Whether the amount string ``value`` is reserved for ``test_amounts``."""
    return _held_out(config.seed, f"amount:{value}", config.amount_holdout)


class _Sampler:
    """Draws slot values and formats; ``unseen`` says which side of the amount holdout to use."""

    def __init__(self, rng: random.Random, config: CorpusConfig, unseen: bool) -> None:
        self.rng, self.config, self.unseen = rng, config, unseen
        self.amounts: list[str] = []

    def amount(self, draw) -> str:
        """Draw amount strings until one falls on the wanted side of the holdout."""
        while True:
            value = draw()
            if is_held_out_amount(value, self.config) == self.unseen:
                self.amounts.append(value)
                return value

    def ordered(self, low: int, high: int, direction: str) -> tuple[str, str]:
        """Two close prices in cents as (new, old) strings, new > old when ``direction`` is up."""
        r = self.rng
        while True:
            a = self.amount(lambda: f"{r.randint(low, high) / 100:.2f}")
            cents = round(float(a) * 100)  # the other price is within 40 cents
            b = self.amount(
                lambda c=cents: f"{min(max(c + r.randint(-40, 40), low), high) / 100:.2f}")
            del self.amounts[-2:]  # recorded below, in sentence order
            if a != b:
                hi, lo = (a, b) if float(a) > float(b) else (b, a)
                new, old = (hi, lo) if direction == "up" else (lo, hi)
                self.amounts += [new, old]
                return new, old

    def pct(self, top: float = 19.9) -> str:
        """A percentage with one decimal, from 0.1 to ``top``."""
        return self.amount(lambda: f"{self.rng.randint(1, round(top * 10)) / 10:.1f}")

    def money(self) -> tuple[str, str]:
        """A large amount as (jargon, plain): ``$1.2bn`` and ``1.2 billion dollars``."""
        r = self.rng
        value = self.amount(lambda: str(r.randint(2, 999)) if r.random() < 0.5
                            else f"{r.randint(10, 999) / 10:.1f}")
        code = r.choice(("USD", "USD", "EUR", "GBP", "JPY", "CHF"))
        symbol, _, plural = CURRENCIES[code]
        scale = r.choice(("million", "billion"))
        short = r.choice({"million": ("m", "mn"), "billion": ("bn", "b")}[scale])
        styles = [f"{code} {value}{short}", f"{value}{short} {code}"]
        if symbol:
            styles += [f"{symbol}{value}{short}", f"{symbol}{value} {scale}"]
        return r.choice(styles), f"{value} {scale} {plural}"

    def quarter(self) -> tuple[str, str]:
        q, year = self.rng.randint(1, 4), self.rng.randint(2019, 2025)
        jargon = self.rng.choice((f"Q{q} {year}", f"Q{q}'{year % 100}", f"{q}Q{year % 100}"))
        return jargon, f"the {QUARTER_WORDS[q - 1]} quarter of {year}"

    def fiscal_year(self) -> tuple[str, str]:
        year = self.rng.randint(2020, 2027)
        return self.rng.choice((f"FY{year % 100}", f"FY{year}")), str(year)

    def date(self) -> tuple[str, str]:
        day, month, year = self.rng.randint(1, 28), self.rng.randint(1, 12), self.rng.randint(
            2019, 2025)
        name = MONTHS[month - 1]
        jargon = self.rng.choice((f"{day} {name[:3]} {year}", f"{year}-{month:02d}-{day:02d}",
                                  f"{name[:3]} {day}, {year}"))
        return jargon, f"{day} {name} {year}"


def _slots(intent: Intent, entity: str, direction: str, s: _Sampler) -> dict[str, str]:
    """Fill every slot the intent's templates use: jargon ``{x}`` and plain ``{x_p}``."""
    r, slots = s.rng, {}
    if intent.entity_kind == "company":  # the possessive of "Wonka Industries" has no s
        slots["company"], slots["company_s"] = entity, entity + ("'" if entity[-1] == "s"
                                                                  else "'s")
    elif intent.entity_kind == "index":
        slots["index"], slots["index_p"] = entity, dict(INDICES)[entity]
    elif intent.entity_kind == "bank":
        slots["bank"], slots["bank_p"] = entity, dict(BANKS)[entity]
    else:
        base, quote = entity.split("/")
        slots.update(pair=entity, base=base, quote=quote, base_p=CURRENCY_NAMES[base],
                     quote_p=CURRENCY_NAMES[quote], base_unit=CURRENCIES[base][1],
                     quote_unit=CURRENCIES[quote][2])
    if intent.name == "eps":
        slots["quarter"], slots["quarter_p"] = s.quarter()
        eps, est = s.ordered(5, 999, direction)
        slots.update(eps=f"${eps}", est=f"${est}", eps_p=f"{eps} dollars", est_p=f"{est} dollars")
    elif intent.name == "revenue":
        slots["quarter"], slots["quarter_p"] = s.quarter()
        slots["money"], slots["money_p"] = s.money()
        slots["pct"] = s.pct()
    elif intent.name in ("shares", "index", "fx"):  # currencies and indices move less
        slots["pct"] = s.pct({"shares": 19.9, "index": 4.9, "fx": 2.9}[intent.name])
    if intent.name in ("guidance", "buyback"):
        slots["money"], slots["money_p"] = s.money()
    if intent.name == "guidance":
        slots["fy"], slots["fy_p"] = s.fiscal_year()
    if intent.name == "dividend":
        code = r.choice(("USD", "EUR", "GBP"))
        symbol, _, plural = CURRENCIES[code]
        new, old = s.ordered(5, 499, direction)
        slots.update(dps=f"{symbol}{new}", prev=f"{symbol}{old}", dps_p=f"{new} {plural}",
                     prev_p=f"{old} {plural}")
    if intent.name in ("dividend", "index", "rates"):
        slots["date"], slots["date_p"] = s.date()
    if intent.name == "index":
        slots["level"] = s.amount(lambda: f"{r.randint(100_000, 3_999_999) / 100:,.2f}")
    if intent.name == "rates":
        slots["bps"] = s.amount(lambda: str(5 * r.randint(1, 40)))
        slots["rate"] = s.amount(lambda: f"{r.randint(5, 150) * 0.05:.2f}")
    if intent.name == "fx":
        yen = entity.endswith("JPY")
        slots["fx"] = s.amount(lambda: f"{r.randint(10_000, 16_999) / 100:.2f}" if yen
                               else f"{r.randint(6_000, 19_999) / 10_000:.4f}")
    if intent.name == "shares" or intent.reaction:
        slots["session"], slots["session_p"] = r.choice(SESSIONS)
    return slots


def make_pair(intent: Intent, template: int, entity: str, direction: str,
              sampler: _Sampler) -> Pair:
    """Generate one sentence pair for a meaning; the sampler draws amounts, formats, clauses."""
    sampler.amounts = []
    slots = _slots(intent, entity, direction, sampler)
    source = pick_direction(intent.sources[template], direction).format(**slots)
    target = pick_direction(intent.target, direction).format(**slots)
    if intent.reaction and sampler.rng.random() < sampler.config.reaction_prob:
        reaction = sampler.rng.choice(DIRECTIONS)  # the market may disagree with the news
        slots["r_pct"] = sampler.pct()
        source += pick_direction(sampler.rng.choice(REACTION_SOURCES), reaction).format(**slots)
        target += pick_direction(REACTION_TARGET, reaction).format(**slots)
    target = target[0].upper() + target[1:] + "."
    return Pair(source, target, intent.name, template, entity, direction, tuple(sampler.amounts))


def _draw_split(n: int, rng: random.Random, config: CorpusConfig, combos: list,
                unseen_amounts: bool, exclude: set[str]) -> list[Pair]:
    """Draw ``n`` pairs with distinct sources, not in ``exclude``, from the given combinations."""
    by_intent = {intent.name: intent for intent in INTENTS}
    names = sorted({c[0] for c in combos})
    per_intent = {name: [c for c in combos if c[0] == name] for name in names}
    sampler = _Sampler(rng, config, unseen_amounts)
    pairs: list[Pair] = []
    while len(pairs) < n:
        name, template, entity, direction = rng.choice(per_intent[rng.choice(names)])
        pair = make_pair(by_intent[name], template, entity, direction, sampler)
        if pair.source not in exclude:
            exclude.add(pair.source)
            pairs.append(pair)
    return pairs


def build_corpus(config: CorpusConfig | None = None) -> dict[str, list[Pair]]:
    """Generate the four splits (see the module docstring); the same config gives the same pairs."""
    config = config or CorpusConfig()
    rng = random.Random(config.seed)
    held = held_out_combos(config)
    seen = [c for c in all_combos() if c not in held]
    unseen = sorted(held)
    used: set[str] = set()
    corpus = {"train": _draw_split(config.n_train, rng, config, seen, False, used)}
    corpus["val"] = _draw_split(config.n_val, rng, config, seen, False, used)
    corpus["test_combos"] = _draw_split(config.n_test, rng, config, unseen, False, used)
    corpus["test_amounts"] = _draw_split(config.n_test, rng, config, seen, True, used)
    return corpus
