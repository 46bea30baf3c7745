"""The grammar of Project 5's parallel corpus: financial jargon on one side, plain English on
the other.

Introduced in lesson 5.6 (``m05-l06``). A *meaning* is an intent (an earnings beat, a rate
decision, a currency move...), an entity (a company, an index, a central bank, a currency pair),
a direction (``up`` or ``down``) and slot values (amounts, percentages, dates). Each intent has
several jargon templates, the way a terminal headline, a trader's chat line or a wire story
would phrase it, and one plain-English template. In a template, ``{slot}`` is filled from the
meaning and ``[up text|down text]`` picks the words of the direction.

Entity tables pair the jargon name with the plain name: ``("Fed", "the US Federal Reserve")``.
Slot formats (how an amount, a quarter or a date is written) are chosen per sentence in
:mod:`neuralarch.projects.translator.corpus`.
"""

from __future__ import annotations

from dataclasses import dataclass

COMPANIES = ("ACME Corp", "Globex", "Initech", "Hooli", "Vandelay Industries", "Soylent Corp",
             "Wayne Enterprises", "Cyberdyne Systems", "Tyrell Corp", "Wonka Industries",
             "Oscorp", "Aperture Labs", "Massive Dynamic", "Pied Piper", "Dunder Mifflin",
             "Sterling Cooper")
INDICES = (("SPX", "the S&P 500 index"), ("NDX", "the Nasdaq 100 index"),
           ("DJIA", "the Dow Jones Industrial Average"), ("FTSE 100", "London's FTSE 100 index"),
           ("DAX", "Germany's DAX index"), ("Nikkei 225", "Japan's Nikkei 225 index"),
           ("CAC 40", "France's CAC 40 index"), ("Hang Seng", "Hong Kong's Hang Seng index"),
           ("Euro Stoxx 50", "the Euro Stoxx 50 index"))
BANKS = (("Fed", "the US Federal Reserve"), ("ECB", "the European Central Bank"),
         ("BoE", "the Bank of England"), ("BoJ", "the Bank of Japan"),
         ("SNB", "the Swiss National Bank"), ("RBA", "the Reserve Bank of Australia"),
         ("BoC", "the Bank of Canada"))
# currency code -> (symbol or None, plain singular, plain plural)
CURRENCIES = {"USD": ("$", "dollar", "dollars"), "EUR": ("€", "euro", "euros"),
              "GBP": ("£", "pound", "pounds"), "JPY": ("¥", "yen", "yen"),
              "CHF": (None, "Swiss franc", "Swiss francs"),
              "AUD": (None, "Australian dollar", "Australian dollars")}
PAIRS = (("EUR", "USD"), ("GBP", "USD"), ("USD", "JPY"), ("EUR", "GBP"), ("USD", "CHF"),
         ("AUD", "USD"))
CURRENCY_NAMES = {"USD": "the US dollar", "EUR": "the euro", "GBP": "the British pound",
                  "JPY": "the Japanese yen", "CHF": "the Swiss franc",
                  "AUD": "the Australian dollar"}
SESSIONS = (("pre-market", "before the market opened"), ("after hours", "after the market closed"),
            ("at the close", "by the end of the trading day"),
            ("intraday", "during the trading day"))
QUARTER_WORDS = ("first", "second", "third", "fourth")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


@dataclass(frozen=True)
class Intent:
    """One kind of financial news: its entity table, jargon templates and plain template."""

    name: str
    entity_kind: str  # "company", "index", "bank" or "pair"
    sources: tuple[str, ...]  # jargon phrasings; each uses every slot of the plain one
    target: str  # the one plain-English phrasing
    reaction: bool = False  # may be followed by the share price's reaction ("; shares +2%")


INTENTS = (
    Intent("eps", "company", (
        "{company} {quarter} EPS {eps} vs. {est} est., [a beat|a miss]",
        "{company} [topped|missed] {quarter} EPS consensus: {eps} vs. {est}",
        "{quarter}: {company} EPS of {eps}, [ahead of|short of] the Street's {est}",
    ), "{company} earned {eps_p} per share in {quarter_p}, [more|less] than the {est_p} "
       "that analysts expected", reaction=True),
    Intent("revenue", "company", (
        "{company} {quarter} rev. {money} ([+|-]{pct}% y/y)",
        "{company} posted {quarter} revenue of {money}, [up|down] {pct}% YoY",
        "{quarter} top line at {company} came in at {money}, [+|-]{pct}% y/y",
        "{company}: {quarter} sales [grew|shrank] {pct}% y/y to {money}",
    ), "{company_s} revenue in {quarter_p} was {money_p}, {pct}% [higher|lower] than a year "
       "earlier", reaction=True),
    Intent("shares", "company", (
        "{company} shares [+|-]{pct}% {session}",
        "{company} [rallied|slid] {pct}% {session}",
        "Shares of {company} [popped|sank] {pct}% {session}",
        "{company} stock [up|down] {pct}% {session}",
    ), "{company_s} shares [rose|fell] {pct}% {session_p}"),
    Intent("guidance", "company", (
        "{company} [raises|cuts] {fy} rev. guide to {money}",
        "{company} [ups|trims] {fy} revenue outlook to {money}",
        "{fy} guidance [raised|lowered] at {company}: sales seen at {money}",
    ), "{company} [raised|lowered] its revenue forecast for the {fy_p} financial year to "
       "{money_p}", reaction=True),
    Intent("dividend", "company", (
        "{company} [hikes|cuts] qtrly div to {dps}/sh from {prev}, payable {date}",
        "{company} declares {dps} quarterly dividend ([up|down] from {prev}); pay date {date}",
        "Div [hike|cut] at {company}: {prev} -> {dps} per share, paid {date}",
    ), "{company} [raised|cut] its quarterly dividend from {prev_p} to {dps_p} per share, to "
       "be paid on {date_p}"),
    Intent("buyback", "company", (
        "{company} [authorizes {money} buyback|prices {money} follow-on offering]",
        "{company} [unveils {money} share repurchase|launches {money} secondary]",
        "{company} to [buy back up to {money} of stock|raise {money} in new equity]",
    ), "{company} [plans to buy back|plans to sell] {money_p} [of its own shares|of new "
       "shares]"),
    Intent("index", "index", (
        "{index} [+|-]{pct}% to {level} on {date}",
        "{index} closed [up|down] {pct}% at {level} on {date}",
        "{date}: {index} [gained|shed] {pct}%, settling at {level}",
    ), "On {date_p}, {index_p} [rose|fell] {pct}% to {level} points"),
    Intent("rates", "bank", (
        "{bank} [hiked|cut] by {bps}bps to {rate}% on {date}",
        "{date}: {bank} [hikes|cuts] {bps}bp, policy rate now {rate}%",
        "{bank} delivers {bps}bp [hike|cut]; rate at {rate}% ({date})",
    ), "On {date_p}, {bank_p} [raised|lowered] its main interest rate by {bps} basis points "
       "to {rate}%"),
    Intent("fx", "pair", (
        "{pair} [+|-]{pct}% to {fx}",
        "{pair} [rallies|slides] {pct}% to {fx}",
        "{base} [firmer|weaker] vs. {quote}: {pair} {fx} ([+|-]{pct}%)",
    ), "{base_p} [rose|fell] {pct}% against {quote_p}, to {fx} {quote_unit} per {base_unit}"),
)
# appended to a company's news: how its shares reacted
REACTION_SOURCES = ("; shares [+|-]{r_pct}% {session}", ", stock [up|down] {r_pct}% {session}")
REACTION_TARGET = "; its shares [rose|fell] {r_pct}% {session_p}"
DIRECTIONS = ("up", "down")


def entities(kind: str) -> tuple[str, ...]:
    """The jargon names of the entities of one kind (the keys of the combination splits)."""
    tables = {"company": COMPANIES, "index": tuple(j for j, _ in INDICES),
              "bank": tuple(j for j, _ in BANKS), "pair": tuple(f"{a}/{b}" for a, b in PAIRS)}
    if kind not in tables:
        raise ValueError(f"entity kind must be one of {sorted(tables)}, got {kind!r}")
    return tables[kind]


def pick_direction(template: str, direction: str) -> str:
    """Resolve every ``[up text|down text]`` in a template for ``direction``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    out, rest = [], template
    while "[" in rest:
        head, _, tail = rest.partition("[")
        choice, _, rest = tail.partition("]")
        up, _, down = choice.partition("|")
        out += [head, up if direction == "up" else down]
    return "".join(out) + rest
