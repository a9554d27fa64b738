"""Held-out evaluation items (generated arithmetic word problems with their answers): the
decontamination targets. The generated crawl plants some of them verbatim; decontamination
gets the same list as its built-in eval set (``eval_items(seed, n)``)."""
from __future__ import annotations

import random

from deeprecipe.stages.text import normalise_words

_EVAL_NAMES = ["Amira", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiroshi", "Ines",
               "Jonas", "Keira", "Lorenzo", "Maya", "Nikolai", "Oona", "Pavel", "Quinn", "Rosa"]
_EVAL_GOODS = ["apples", "notebooks", "tickets", "candles", "bicycles", "lemons", "stamps", "pencils",
               "jars of honey", "bags of rice", "postcards", "tomato plants"]
_EVAL_PLACES = ["market", "bakery", "bookshop", "station kiosk", "harbour stall", "garden centre"]
_EVAL_TOWNS = ["Oakridge", "Belmonte", "Kirchdorf", "Saint-Aubin", "Valverde", "Millbrook", "Torrance",
               "Lindenau", "Castelnou", "Ashford"]


def _eval_purchase(rng: random.Random) -> str:
    name, friend = rng.sample(_EVAL_NAMES, 2)
    goods, place = rng.choice(_EVAL_GOODS), rng.choice(_EVAL_PLACES)
    a, price = rng.randint(12, 96), rng.randint(2, 19)
    b = rng.randint(2, a - 3)
    return (f"Question: {name} buys {a} {goods} at the {place} for {price} dollars each and later gives "
            f"{b} of them to {friend}. How many of the {a} {goods} does {name} keep, and what did "
            f"all {a} cost? Answer: {name} keeps {a - b} {goods}; they cost {a * price} dollars.")


def _eval_train(rng: random.Random) -> str:
    start, end = rng.sample(_EVAL_TOWNS, 2)
    hour, minute, hours = rng.randint(5, 12), rng.randrange(0, 60, 5), rng.randint(2, 9)
    speed, number = rng.randint(35, 140), rng.randint(100, 999)
    return (f"Question: Train {number} leaves {start} at {hour}:{minute:02d} and travels at {speed} "
            f"kilometres per hour towards {end}, which lies {speed * hours} kilometres away. At what "
            f"time does train {number} reach {end} if it never stops? Answer: at "
            f"{hour + hours}:{minute:02d}, after {hours} hours.")


def _eval_garden(rng: random.Random) -> str:
    name = rng.choice(_EVAL_NAMES)
    width, length = rng.randint(3, 99), rng.randint(100, 400)
    return (f"Question: {name} owns a rectangular garden {width} metres wide and {length} metres long. "
            f"How many metres of fence does {name} need around the {width} by {length} garden, and "
            f"what is its area? Answer: {2 * (width + length)} metres of fence and {width * length} "
            f"square metres.")


def _eval_reading(rng: random.Random) -> str:
    name = rng.choice(_EVAL_NAMES)
    per_day, days_total = rng.randint(8, 45), rng.randint(6, 30)
    pages = per_day * days_total - rng.randint(0, per_day - 1)
    after = rng.randint(2, days_total - 1)
    return (f"Question: {name} reads {per_day} pages every evening from a novel with {pages} pages. "
            f"After {after} evenings, how many of the {pages} pages remain unread, and on which evening "
            f"does {name} finish? Answer: {pages - per_day * after} pages remain; {name} finishes on "
            f"evening {days_total}.")


def _eval_sequence(rng: random.Random) -> str:
    first, step, count = rng.randint(2, 60), rng.randint(3, 17), rng.randint(5, 8)
    terms = [first + k * step for k in range(count)]
    name, town = rng.choice(_EVAL_NAMES), rng.choice(_EVAL_TOWNS)
    return (f"Question: {name} writes {terms[0]}, {terms[1]}, {terms[2]} and {terms[3]} on the {town} "
            f"club board. Which number follows {terms[3]}, and what is the sum of {name}'s first "
            f"{count} numbers from {terms[0]} to {terms[-1]}? Answer: {terms[4]}, and the sum is "
            f"{sum(terms)}.")


EVAL_TEMPLATES = (_eval_purchase, _eval_train, _eval_garden, _eval_reading, _eval_sequence)


EVAL_NGRAM = 13  # decontamination's n-gram length (words); eval items share none of this length


def _word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise_words(text)
    return {tuple(words[k:k + n]) for k in range(len(words) - n + 1)}


def eval_items(seed: int, n: int) -> list[str]:
    """The first ``n`` held-out evaluation items of ``seed``: generated arithmetic word problems
    with their answers ("Question: ... Answer: ..."), 39-51 words each, the five templates in
    turn. Item ``i`` is the first candidate of its own random stream ``(seed, i, attempt)`` that
    shares no ``EVAL_NGRAM``-word n-gram with items ``0..i-1``, so a 13-gram match names exactly
    one item, and the list is prefix-stable (``eval_items(s, k) == eval_items(s, n)[:k]``).
    The generated crawl plants some of them verbatim (label ``contaminated``); decontamination
    gets the same list as its built-in eval set."""
    items: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for index in range(n):
        template = EVAL_TEMPLATES[index % len(EVAL_TEMPLATES)]
        for attempt in range(1000):
            text = template(random.Random(f"eval-item/{seed}/{index}/{attempt}"))
            grams = _word_ngrams(text, EVAL_NGRAM)
            if not grams & seen:
                break
        else:  # pragma: no cover - needs thousands of items of one template
            raise ValueError(f"cannot make {n} eval items without shared {EVAL_NGRAM}-grams")
        items.append(text)
        seen |= grams
    return items


