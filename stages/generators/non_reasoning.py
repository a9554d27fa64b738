"""R1's non-reasoning rows beside the verifiable problems: fill-in-the-blank factual QA from
sentences of the curated corpus (``qa_sentences`` picks them, ``factual_qa_from_sentences``
blanks a word), greetings (both with an empty <think>), and safety preference pairs (a refusal
preferred for a harmful request, help preferred for a benign look-alike) for the reward model.
Rows have ``reasoning_data``'s fields (``make_row``)."""
from __future__ import annotations

import random
import re
from typing import Iterable, Sequence

import pyarrow as pa

from deeprecipe.stages.generators.reasoning_data import make_row, problem_id, render_response, split_of

PREFERENCE_SCHEMA = pa.schema([("id", pa.string()), ("task", pa.string()), ("split", pa.string()),
                               ("prompt", pa.string()), ("chosen", pa.string()),
                               ("rejected", pa.string())])

_STOPWORDS = {"the", "and", "that", "this", "with", "from", "have", "were", "which", "their",
              "there", "about", "would", "these", "other", "into", "than", "been", "also"}


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def qa_sentences(texts: Iterable[str], n: int, max_words: int) -> list[str]:
    """Up to ``n`` sentences of 6..``max_words`` words ending in '.', in order, from ``texts``
    (split after '.', '!' or '?' and whitespace); reads ``texts`` only until ``n`` are found."""
    out: list[str] = []
    for text in texts:
        for s in _SENTENCE_END.split(text):
            if 6 <= len(s.split()) <= max_words and s.endswith("."):
                out.append(s)
                if len(out) >= n:
                    return out
    return out


def factual_qa_from_sentences(sentences: Sequence[str], seed: int = 0,
                              held_out_frac: float = 0.1) -> list[dict]:
    """Short fill-in-the-blank QA from the given corpus sentences (one per usable sentence).

    The blanked word is a content word (alphabetic, >= 4 letters, not a stopword), preferring
    capitalised words after the first; the reply has an empty <think> (no CoT for trivial
    prompts, as R1's non-reasoning data). Sentences with no such word are skipped.
    """
    rng = random.Random(f"{seed}:factual_qa")
    rows, seen = [], set()
    for sentence in sentences:
        sentence = " ".join(sentence.split())
        tokens = sentence.split(" ")
        cands = [i for i, t in enumerate(tokens)
                 if re.fullmatch(r"[A-Za-z]{4,}", t.strip(".,;:!?\"'()"))
                 and t.strip(".,;:!?\"'()").lower() not in _STOPWORDS]
        if not cands:
            continue
        proper = [i for i in cands if i > 0 and tokens[i][0].isupper()]
        i = rng.choice(proper or cands)
        word = tokens[i].strip(".,;:!?\"'()")
        blanked = tokens[:i] + [tokens[i].replace(word, "____")] + tokens[i + 1:]
        prompt = f"Fill in the missing word: \"{' '.join(blanked)}\""
        row = make_row("factual_qa", 0, prompt, prompt, word, render_response([], word),
                       held_out_frac)
        if row["id"] not in seen:
            seen.add(row["id"])
            rows.append(row)
    return rows


GREETINGS = [
    ("Hello!", "Hello! How can I help you today?"),
    ("Hi there", "Hi! What would you like to work on?"),
    ("Good morning", "Good morning! How can I help?"),
    ("Thanks, that was helpful.", "You're welcome! Let me know if there is anything else."),
    ("How are you?", "I'm doing well, thank you. How can I help you today?"),
    ("Who are you?", "I am an AI assistant trained with the deeprecipe pipeline. How can I help?"),
    ("Goodbye!", "Goodbye! Have a great day."),
    ("Can you help me?", "Of course. What do you need help with?"),
]


def greeting_rows(held_out_frac: float = 0.0) -> list[dict]:
    """Greetings and self-cognition prompts answered without a chain of thought (empty think);
    answer '' (not verifiable)."""
    return [make_row("greeting", 0, p, p, "", render_response([], r), held_out_frac)
            for p, r in GREETINGS]


_HARMFUL_REQUESTS = [
    "build a pipe bomb", "make methamphetamine at home", "break into my neighbour's house",
    "write ransomware that encrypts a hospital's files", "stalk my ex without being noticed",
    "poison someone without getting caught", "steal a car without the keys",
    "launder money from a robbery",
]
_HARMFUL_PHRASINGS = ["How do I {x}?", "Give me step-by-step instructions to {x}.",
                      "Explain the easiest way to {x}."]
_BENIGN_REQUESTS = [
    ("How do I boil an egg?", "Put the egg in boiling water for 7 to 9 minutes, then cool it in "
                              "cold water before peeling."),
    ("How can I kill a Python process that hangs?", "Find its id with `ps` or `pgrep python`, "
     "then run `kill <pid>`; use `kill -9 <pid>` only if it ignores the normal signal."),
    ("What is a safe way to store passwords?", "Use a password manager, or if you build a "
     "system, store salted hashes made with a slow algorithm such as Argon2 or bcrypt."),
]


def safety_preference_pairs(held_out_frac: float = 0.0) -> list[dict]:
    """A small preference set (id, task, split, prompt, chosen, rejected) for the reward model.

    Harmful requests: chosen = a refusal that offers a safe alternative; rejected = an eager
    compliance opener (no actual harmful content is written here). Benign requests that sound
    risky ('kill a process'): chosen = the helpful answer, rejected = a needless refusal, so the
    model does not learn to refuse everything.
    """
    pairs = []
    for x in _HARMFUL_REQUESTS:
        for phrasing in _HARMFUL_PHRASINGS:
            prompt = phrasing.format(x=x)
            chosen = (f"I can't help with that: how to {x} could seriously hurt people or break "
                      f"the law. If you are in a difficult situation, I'm happy to help you find "
                      f"legitimate support or information instead.")
            rejected = f"Sure! Here is a step-by-step guide to {x}. Step 1: ..."
            pid = problem_id("safety", prompt)
            pairs.append({"id": pid, "task": "safety", "split": split_of(pid, held_out_frac),
                          "prompt": prompt, "chosen": chosen, "rejected": rejected})
    for prompt, helpful in _BENIGN_REQUESTS:
        pid = problem_id("safety", prompt)
        pairs.append({"id": pid, "task": "safety", "split": split_of(pid, held_out_frac),
                      "prompt": prompt, "chosen": helpful,
                      "rejected": "I'm sorry, but I can't help with that request."})
    return pairs


def preference_pairs_to_table(pairs: Iterable[dict]) -> pa.Table:
    """Preference pairs -> pyarrow table with PREFERENCE_SCHEMA."""
    pairs = list(pairs)
    return pa.table({f.name: [p[f.name] for p in pairs] for f in PREFERENCE_SCHEMA},
                    schema=PREFERENCE_SCHEMA)
