"""Generated pages of the kinds a curation stage must recognise: spam and low-quality pages
(``SPAM_GENERATORS``), code and math pages, and cross-site boilerplate sentences with their
planted variants."""
from __future__ import annotations

import random
import string
from typing import Sequence

from deeprecipe.stages.generators.labelled_prose import SentenceFn, sentence_source, lexicon, natural_sentence

SPAM_WORDS = ["cheap", "buy", "best", "price", "discount", "casino", "free", "bonus", "win", "online",
              "replica", "watches", "pills", "deal", "offer", "click", "now", "sale"]
LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
         "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris").split()


def spam_keyword_stuffing(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(15, 30)):
        lines.append(" ".join(rng.choice(SPAM_WORDS) for _ in range(rng.randint(4, 12))))
    return "\n".join(lines)


def spam_lorem_ipsum(rng: random.Random) -> str:
    paras = []
    for _ in range(rng.randint(3, 6)):
        words = [rng.choice(LOREM) for _ in range(rng.randint(40, 90))]
        paras.append("Lorem ipsum " + " ".join(words) + ".")
    return "\n".join(paras)


def spam_repeated_lines(rng: random.Random, lang: str = "en") -> str:
    base = [natural_sentence(rng, lang) for _ in range(3)]
    return "\n".join(rng.choice(base) for _ in range(rng.randint(20, 40)))


def spam_javascript(rng: random.Random) -> str:
    lines = []
    for i in range(rng.randint(20, 40)):
        v = "".join(rng.choice(string.ascii_lowercase) for _ in range(5))
        lines.append(rng.choice([
            f"var {v} = document.getElementById('{v}{i}');",
            f"function {v}() {{ return window.{v} || {{}}; }}",
            "Please enable JavaScript in your browser to view this page.",
            f"if ({v}.length > {i}) {{ {v}.push({i}); }}",
            f"$('#{v}').on('click', function() {{ {v}({i}); }});",
        ]))
    return "\n".join(lines)


def spam_bullets_ellipsis(rng: random.Random, lang: str = "en") -> str:
    lines = []
    for _ in range(rng.randint(15, 30)):
        words = natural_sentence(rng, lang).rstrip(".!?").split()[: rng.randint(3, 7)]
        lines.append(rng.choice(["• ", "- ", "* "]) + " ".join(words) + rng.choice(["...", "…"]))
    return "\n".join(lines)


SPAM_GENERATORS = {
    "spam_keywords": lambda rng, lang: spam_keyword_stuffing(rng),
    "spam_lorem": lambda rng, lang: spam_lorem_ipsum(rng),
    "spam_repeated": spam_repeated_lines,
    "spam_javascript": lambda rng, lang: spam_javascript(rng),
    "spam_bullets": spam_bullets_ellipsis,
}

# ---------------------------------------------------------------------------------------------
# code and math
# ---------------------------------------------------------------------------------------------


def code_page(rng: random.Random) -> str:
    lx = lexicon("en")
    out = []
    for _ in range(rng.randint(3, 6)):
        fn, arg = lx.pick(rng, lx.verbs), lx.pick(rng, lx.nouns)
        out += [f"def {fn}_{arg}({arg}, n={rng.randint(1, 9)}):",
                f'    """Return the {lx.pick(rng, lx.adjs)} {arg} of the input."""',
                f"    total = {{}}",
                f"    for i in range(n):",
                f"        total[i] = {arg}[i] * {rng.randint(2, 9)} + 0x{rng.randint(0, 255):02x}",
                f"    return total", ""]
    return "\n".join(out)


def math_sentence(rng: random.Random) -> str:
    lx = lexicon("en")
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return rng.choice([
        f"Let $f(x) = x^{a} + {b}x$; then the derivative is $f'(x) = {a}x^{a - 1} + {b}$.",
        f"By the theorem of the {lx.pick(rng, lx.nouns)}, every prime $p > {a}$ divides $p^{b} - p$.",
        f"Proof. Suppose $n$ is an integer with $n^2 = {a * a}$; hence $n = \\pm {a}$, which proves the lemma.",
        f"We compute the integral $\\int_0^{a} x^{b} \\, dx = {a}^{b + 1}/{b + 1}$ and the sum of the series.",
        f"The matrix $A$ has eigenvalues $\\lambda_1 = {a}$ and $\\lambda_2 = {b}$, so its determinant is ${a * b}$.",
        f"Consider the equation ${a}x + {b} = 0$; solving for $x$ gives $x = -{b}/{a}$.",
        f"Corollary. If the {lx.pick(rng, lx.nouns)} is bounded then the limit of $a_n$ exists and equals {a}.",
    ])


def math_page(rng: random.Random, sentence: SentenceFn | None = None) -> str:
    """4-8 paragraphs (lines) of 2-4 sentences, ~60 % of them math (LaTeX in ``$...$``), the rest
    from ``sentence`` (default: English ``natural_sentence``)."""
    sentence = sentence_source("en", sentence)
    paras = []
    for _ in range(rng.randint(4, 8)):
        sents = [math_sentence(rng) if rng.random() < 0.6 else sentence(rng) for _ in range(rng.randint(2, 4))]
        paras.append(" ".join(sents))
    return "\n".join(paras)


# ---------------------------------------------------------------------------------------------
# boilerplate
# ---------------------------------------------------------------------------------------------


def boilerplate_sentences(rng: random.Random, n: int) -> list[str]:
    """Distinct long 'site furniture' sentences (>= 12 words) shared across sites."""
    lx = lexicon("en")
    out = []
    for _ in range(n):
        out.append(rng.choice([
            "By continuing to browse the {a} pages of this {n} you agree to the use of cookies for {b} and {c}.",
            "Subscribe to the {a} newsletter of the {n} to receive weekly updates on {b} offers and {c} news.",
            "All content on this {n} is provided for {a} information only and does not constitute {b} or {c} advice.",
            "Copyright notice: the {a} {n} and all related {b} material are protected by {c} law in every country.",
        ]).format(a=lx.pick(rng, lx.adjs), n=lx.pick(rng, lx.nouns), b=lx.pick(rng, lx.nouns), c=lx.pick(rng, lx.nouns)))
    return out


def boilerplate_variant(rng: random.Random, sentence: str, edit: bool,
                        vocabulary: Sequence[str] | None = None) -> str:
    """Normalisation-level variant (case, punctuation, spaces) or, with ``edit``, one word changed
    (to a word of ``vocabulary``; default: the generated English nouns)."""
    words = sentence.split(" ")
    if edit:
        i = rng.randrange(1, len(words) - 1)
        choices = [w for w in (vocabulary or lexicon("en").nouns) if w.lower() != words[i].lower()]
        words[i] = choices[int(len(choices) * rng.random() ** 1.6)]
    text = " ".join(words)
    return rng.choice([text, text.upper(), text.rstrip(".") + "!", text.replace(" ", "  ", 2), text.lower()])

