"""The chat format of post-training, text <-> token ids (one turn; every tag is a single
special token of `stages.tokenizer_train`):

    <|user|>{prompt}<|assistant|><think>\\n{reasoning}\\n</think>\\n<answer>{answer}</answer><|eos|>

The prompt part is `<|user|>{prompt}<|assistant|>` (`chat_prompt`); the response is the
`solution` text of a `stages.generators.reasoning_data` row followed by `<|eos|>`. R1-Zero skips the chat
tokens and uses the plain-text template `reasoning_data.r1_zero_prompt` (`prompt_style='r1_zero'`)
on the base model. A response ends at `<|eos|>` or a token of `PROMPT_STOPS[style]` (none by
default: R1-Zero rollouts are not cut at `</answer>` as vLLM-based setups often do, see the
constant). Generated responses are decoded with special tokens kept (the tags are what
`stages.r1.rewards.format_reward` checks) and cut at `<|eos|>`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from deeprecipe.stages.generators.reasoning_data import r1_zero_prompt

USER, ASSISTANT, EOS, PAD = "<|user|>", "<|assistant|>", "<|eos|>", "<|pad|>"
PROMPT_STYLES = ("chat", "r1_zero")
PROMPT_STOPS: dict[str, tuple[str, ...]] = {"chat": (), "r1_zero": ()}
"""Special tokens besides <|eos|> that end a sampled response, per prompt style. R1-Zero setups
on vLLM often stop at `</answer>` (`stop=["</answer>"], include_stop_str_in_output=True`); here
that did not help the format emerge from the `small` base (BENCHMARKS.md, eleventh session: one
full run's grpo_zero learned `</think>\n<answer>..</answer>` without the opening `<think>`,
collecting the accuracy reward without the format), so no style stops early by default;
`bench/grpo_ablation.py`'s `answer_stop` variants set ("</answer>",) for r1_zero."""

SYSTEM = "<|system|>"


def render_chat(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> str:
    """A conversation in our chat format: system -> `<|system|>{content}`, user ->
    `<|user|>{content}`, assistant -> `<|assistant|>{content}<|eos|>`; add_generation_prompt
    appends `<|assistant|>`. One user turn with the generation prompt is `chat_prompt`; a user
    and an assistant turn are an SFT example (prompt ids + response ids + EOS). Our models are
    trained on single user turns only: a system turn (the `<|system|>` special token, never in
    the training data) is defined so transformers' chat template has one; `CHAT_TEMPLATE` is
    this function in Jinja."""
    tags = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
    parts = []
    for m in messages:
        if m["role"] not in tags:
            raise ValueError(f"chat role {m['role']!r}; use one of {sorted(tags)}")
        parts.append(tags[m["role"]] + m["content"] + (EOS if m["role"] == "assistant" else ""))
    return "".join(parts) + (ASSISTANT if add_generation_prompt else "")


CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}" + SYSTEM + "{{ m['content'] }}"
    "{%- elif m['role'] == 'user' -%}" + USER + "{{ m['content'] }}"
    "{%- elif m['role'] == 'assistant' -%}" + ASSISTANT + "{{ m['content'] }}" + EOS +
    "{%- else -%}{{ raise_exception('chat role ' + m['role'] + '; use system, user or assistant') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}" + ASSISTANT + "{%- endif -%}")
"""`render_chat` as a transformers chat template (tokenizer_config.json of an HF export)."""


def chat_prompt(prompt: str) -> str:
    """`<|user|>{prompt}<|assistant|>`: the part the model is conditioned on."""
    return f"{USER}{prompt}{ASSISTANT}"


def prompt_text(prompt: str, style: str) -> str:
    """The prompt as the model sees it: 'chat' (`chat_prompt`) or 'r1_zero' (plain template)."""
    if style == "chat":
        return chat_prompt(prompt)
    if style == "r1_zero":
        return r1_zero_prompt(prompt)
    raise ValueError(f"prompt style {style!r}; use one of {PROMPT_STYLES}")


class ChatTokenizer:
    """A `tokenizers.Tokenizer` with the chat format's special ids."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.eos_id = self._id(EOS)
        self.pad_id = self._id(PAD)

    def _id(self, token: str) -> int:
        i = self.tok.token_to_id(token)
        if i is None:
            raise ValueError(f"tokenizer lacks the special token {token!r}; train it with "
                             f"stages.tokenizer_train.SPECIAL_TOKENS")
        return i

    @classmethod
    def from_file(cls, path: str | Path) -> "ChatTokenizer":
        from tokenizers import Tokenizer
        return cls(Tokenizer.from_file(str(path)))

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def stop_ids(self, style: str) -> list[int]:
        """Ids of `PROMPT_STOPS[style]`: where a response in that prompt style ends."""
        if style not in PROMPT_STOPS:
            raise ValueError(f"prompt style {style!r}; use one of {PROMPT_STYLES}")
        return [self._id(t) for t in PROMPT_STOPS[style]]

    def decode_response(self, ids: Sequence[int]) -> str:
        """Generated ids -> text up to (not including) the first EOS; tags kept."""
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        ids = [i for i in ids if i != self.pad_id]
        return self.tok.decode(ids, skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()


def shorten_solution(solution: str, max_think_lines: int | None) -> str:
    """Keep only the last `max_think_lines` lines of the `<think>` block (the answer block is
    untouched); 0/None keeps everything. A tiny-profile knob: a 2M-parameter model pretrained
    on 128-token rows learns the tag format from short renderings, not from 150-token ones."""
    if not max_think_lines:
        return solution
    m = re.match(r"<think>\n(.*)\n</think>\n(<answer>.*</answer>)\Z", solution, re.S)
    if not m:
        return solution
    lines = [ln for ln in m.group(1).split("\n") if ln.strip()][-int(max_think_lines):]
    return "<think>\n" + "\n".join(lines) + "\n</think>\n" + m.group(2)


def sft_pair(tok: ChatTokenizer, prompt: str, response: str,
             style: str = "chat") -> tuple[list[int], list[int]]:
    """(prompt ids, response ids + EOS) of one training example."""
    return tok.encode(prompt_text(prompt, style)), tok.encode(response) + [tok.eos_id]


def sft_examples(tok: ChatTokenizer, rows: list[dict], response_key: str,
                 max_response_tokens: int,
                 max_think_lines: int | None = None) -> list[tuple[list[int], list[int]]]:
    """Chat-format (prompt ids, response ids + EOS) of rows whose response fits the budget;
    max_think_lines (if set) keeps only the last lines of each `<think>` block."""
    pairs = [sft_pair(tok, r["prompt"], shorten_solution(r[response_key], max_think_lines))
             for r in rows]
    return [p for p in pairs if len(p[1]) <= max_response_tokens]
