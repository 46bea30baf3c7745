"""Project 5's baseline: translate jargon by phrase substitution, the way a careful script would.

Introduced in lesson 5.6 (``m05-l06``). An ordered list of regular-expression rules rewrites
amounts (``$1.2bn`` -> ``1.2 billion dollars``), quarters, fiscal years and dates into their
plain forms, expands abbreviations (``EPS``, ``y/y``, ``bps``), replaces jargon verbs and
names (``Fed`` -> ``the US Federal Reserve``), and copies everything else. It never reorders a
sentence and knows nothing about its structure; that is the honest limit of a dictionary.
Numbers pass through the rules untouched, so it cannot invent one.
"""

from __future__ import annotations

import re

from neuralarch.projects.translator.grammar import (
    BANKS,
    CURRENCIES,
    CURRENCY_NAMES,
    INDICES,
    MONTHS,
    QUARTER_WORDS,
    SESSIONS,
)

_SYMBOLS = {symbol: code for code, (symbol, _, _) in CURRENCIES.items() if symbol}
_SCALES = {"bn": "billion", "b": "billion", "billion": "billion", "m": "million",
           "mn": "million", "million": "million"}
_MONTH = {name[:3]: name for name in MONTHS}
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_CODE = "|".join(CURRENCIES)


def _money(number: str, scale: str | None, code: str) -> str:
    unit = CURRENCIES[code][2]
    return f"{number} {_SCALES[scale]} {unit}" if scale else f"{number} {unit}"


def _rules() -> list[tuple[str, object]]:
    """The substitution rules, most specific first (each is a regex and its replacement)."""
    sym = "|".join(re.escape(s) for s in _SYMBOLS)
    scale = "bn|billion|mn|million|b|m"
    rules: list[tuple[str, object]] = [
        # amounts: $1.2bn, $1.2 billion, USD 1.2bn, 1.2bn USD, $2.04
        (rf"({sym})({_NUM}) ?({scale})\b", lambda m: _money(m[2], m[3], _SYMBOLS[m[1]])),
        (rf"\b({_CODE}) ({_NUM})({scale})\b", lambda m: _money(m[2], m[3], m[1])),
        (rf"\b({_NUM})({scale}) ({_CODE})\b", lambda m: _money(m[1], m[2], m[3])),
        (rf"({sym})({_NUM})", lambda m: _money(m[2], None, _SYMBOLS[m[1]])),
        # quarters, fiscal years and dates
        (r"\bQ([1-4]) (\d{4})\b", lambda m: f"the {QUARTER_WORDS[int(m[1]) - 1]} quarter of "
                                            f"{m[2]}"),
        (r"\bQ([1-4])'(\d\d)\b|\b([1-4])Q(\d\d)\b",
         lambda m: f"the {QUARTER_WORDS[int(m[1] or m[3]) - 1]} quarter of 20{m[2] or m[4]}"),
        (r"\bFY(\d\d)\b", r"the 20\1 financial year"),
        (r"\bFY(\d{4})\b", r"the \1 financial year"),
        (r"\b(\d{4})-(\d\d)-(\d\d)\b",
         lambda m: f"{int(m[3])} {MONTHS[int(m[2]) - 1]} {m[1]}"),
        (rf"\b(\d{{1,2}}) ({'|'.join(_MONTH)}) (\d{{4}})\b",
         lambda m: f"{m[1]} {_MONTH[m[2]]} {m[3]}"),
        (rf"\b({'|'.join(_MONTH)}) (\d{{1,2}}), (\d{{4}})\b",
         lambda m: f"{m[2]} {_MONTH[m[1]]} {m[3]}"),
        # signs, units and abbreviations
        (rf"\+({_NUM})%", r"up \1%"), (rf"(?<![\w-])-({_NUM})%", r"down \1%"),
        (r"(\d)bps?\b", r"\1 basis points"), (r"/sh\b", " per share"), (r" -> ", " to "),
        (r"\by/y\b|\bYoY\b", "from a year earlier"), (r"\bEPS\b", "earnings per share"),
        (r"\bvs\. ", "compared with "), (r"\best\.", "expected"), (r"\brev\. ", "revenue "),
        (r"\bqtrly div\b", "quarterly dividend"), (r"\bDiv\b", "Dividend"),
        (r"\bthe Street's\b", "analysts' forecast of"),
        (r"\bconsensus\b", "analysts' forecast"), (r"\ba beat\b", "better than expected"),
        (r"\ba miss\b", "worse than expected"), (r"\btop line\b", "revenue"),
        (r"\bguide\b|\boutlook\b", "forecast"), (r"\bpolicy rate\b", "main interest rate"),
        (r"\bpay date\b|\bpayable\b", "to be paid on"),
        (r"\bfollow-on offering\b|\bsecondary\b", "sale of new shares"),
        (r"\bnew equity\b", "new shares"), (r"\bbuyback\b|\bshare repurchase\b",
                                            "plan to buy back shares"),
        (r"\bsettling at\b", "ending at"),
        # jargon verbs (the direction stays where the jargon put it)
        (r"\b(?:rallied|popped|gained)\b", "rose"), (r"\b(?:slid|sank|shed)\b", "fell"),
        (r"\brallies\b", "rises"), (r"\bslides\b", "falls"), (r"\bups\b", "raises"),
        (r"\btrims\b", "lowers"), (r"\bhiked\b", "raised rates"), (r"\bhikes\b", "raises"),
        (r"\bfirmer\b", "stronger"), (r"\btopped\b", "beat"), (r"\bahead of\b", "above"),
        (r"\bshort of\b", "below"),
    ]
    for jargon, plain in SESSIONS:
        rules.append((rf"\b{re.escape(jargon)}\b", plain))
    for jargon, plain in INDICES + BANKS:
        rules.append((rf"(?<![\w/]){re.escape(jargon)}\b", plain))
    rules.append((rf"\b({_CODE})/({_CODE})\b",
                  lambda m: f"{CURRENCY_NAMES[m[1]]} against {CURRENCY_NAMES[m[2]]}"))
    rules.append((rf"\b({_CODE})\b", lambda m: CURRENCY_NAMES[m[1]]))
    return rules


RULES = [(re.compile(pattern), replacement) for pattern, replacement in _rules()]


def phrase_substitution(source: str) -> str:
    """Translate one jargon sentence by applying every rule in order, then tidy the ends."""
    text = source
    for pattern, replacement in RULES:
        text = pattern.sub(replacement, text)
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."
