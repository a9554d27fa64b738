"""Our models exported as transformers checkpoints (stages.hf_export) load with no custom
code and compute what ours compute: logits (fp32, positions past the first RoPE period),
greedy generation, the chat template."""
from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from deeprecipe.stages import hf_export  # noqa: E402
from deeprecipe.stages.moe_model import MOE_CONFIGS, MoEConfig, MoETransformer  # noqa: E402
from deeprecipe.stages.r1.chat import (ChatTokenizer, chat_prompt, render_chat,  # noqa: E402
                                       sft_pair)
from deeprecipe.stages.r1.model_io import dense_overrides  # noqa: E402
from deeprecipe.stages.r1.sampler import generate  # noqa: E402
from deeprecipe.stages.tokenizer_train import train_tokenizer  # noqa: E402
from deeprecipe.stages.training_io import export_hf_folder  # noqa: E402

torch.set_num_threads(1)
SEQ = 96  # rope dim 16 at theta 10: the fastest frequency's period is 2*pi positions, the
THETA = 10.0  # slowest's 2*pi*10^(7/8) ~ 47: a 96-position batch passes both


@pytest.fixture(scope="module")
def tok_json(tmp_path_factory):
    texts = ["the cat sat on the mat", "count 1 2 3 and 4", "answer: 42 <think> why </think>"]
    tok = train_tokenizer(texts * 5, vocab_size=300, min_frequency=1)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def model_of(vocab: int, **fields) -> MoETransformer:
    """`tiny`'s shape, shrunk to test in seconds, with `fields` overridden; weights random,
    router biases random too (so the correction bias changes the choice)."""
    base = dataclasses.replace(MOE_CONFIGS["tiny"], vocab_size=vocab, d_model=64, n_layers=3,
                               n_heads=4, head_dim=16, d_ff_dense=128, n_routed_experts=8,
                               top_k=2, d_ff_expert=32, max_seq_len=128, rope_theta=THETA,
                               route_scale=1.7, kv_lora_rank=32, qk_nope_head_dim=16,
                               qk_rope_head_dim=16, v_head_dim=24)
    torch.manual_seed(0)
    model = MoETransformer(dataclasses.replace(base, **fields)).eval()
    with torch.no_grad():
        for n, b in model.named_buffers():
            if n.endswith("expert_bias"):
                b.copy_(torch.randn_like(b) * 0.05)
    return model


VARIANTS = {  # name -> (MoEConfig fields, exported model_type)
    "mla_moe": ({"attention": "mla", "n_shared_experts": 1, "mtp_depth": 1}, "deepseek_v3"),
    "mla_moe_qlora": ({"attention": "mla", "q_lora_rank": 24, "n_shared_experts": 2},
                      "deepseek_v3"),
    "mha_moe": ({"attention": "mha"}, "glm4_moe"),
    "dense_student": (dense_overrides(MOE_CONFIGS["tiny"], n_layers=3), "llama"),  # as
    # workflows.post_train.PretrainStudent builds it (tiny is MHA)
    "dense_mla": ({"attention": "mla", "n_dense_layers": 3}, "deepseek_v3"),
}


def exported(tmp_path, tok_json, name):
    from tokenizers import Tokenizer
    vocab = Tokenizer.from_file(str(tok_json)).get_vocab_size()
    fields, model_type = VARIANTS[name]
    ours = model_of(vocab, **fields)
    manifest = hf_export.export_transformers(ours, tok_json, tmp_path / "hf")
    assert manifest["model_type"] == model_type
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "hf", dtype=torch.float32, attn_implementation="eager").eval()
    return ours, theirs, manifest


@pytest.mark.parametrize("name", list(VARIANTS))
def test_logits_match_transformers(tmp_path, tok_json, name):
    ours, theirs, manifest = exported(tmp_path, tok_json, name)
    assert type(theirs).__name__ == manifest["architectures"][0]
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, ours.cfg.vocab_size, (2, SEQ), generator=g)
    with torch.no_grad():
        a = ours(idx)[0]
        b = theirs(input_ids=idx).logits.float()
    torch.testing.assert_close(b, a, atol=2e-4, rtol=1e-4)
    assert a[:, -1].std() > 0.1  # not trivially equal (both zero)
    if name == "mla_moe":  # the MTP head is the only thing left behind, and said so
        assert manifest["dropped"] and all(k.startswith("mtp.") for k in manifest["dropped"])
        assert any("MTP" in n for n in manifest["notes"])
        assert json.loads((tmp_path / "hf" / "config.json").read_text())[
            "num_nextn_predict_layers"] == 0


@pytest.mark.parametrize("name", ["mla_moe", "dense_student"])
def test_greedy_generation_matches_transformers(tmp_path, tok_json, name):
    ours, theirs, _ = exported(tmp_path, tok_json, name)
    prompts = [[5, 17, 42, 99, 7], [3, 250, 11, 64, 120]]
    mine = generate(ours, prompts, 32, eos_id=None, temperature=0.0)
    for row, prompt in enumerate(prompts):
        out = theirs.generate(torch.tensor([prompt]), max_new_tokens=32, min_new_tokens=32,
                              do_sample=False, eos_token_id=None, pad_token_id=0)
        assert out[0, len(prompt):].tolist() == mine.tokens_BN[row, :32].tolist()


def test_chat_template_is_our_prompt(tmp_path, tok_json):
    ours = model_of(300, attention="mla")
    hf_export.export_transformers(ours, tok_json, tmp_path / "hf")
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    chat = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2+3?"},
            {"role": "assistant", "content": "<think>\n2+3=5\n</think>\n<answer>5</answer>"}]
    text = tok.apply_chat_template(chat, tokenize=False)
    assert text == render_chat(chat) == (
        "<|system|>Be brief.<|user|>What is 2+3?<|assistant|><think>\n2+3=5\n</think>\n"
        "<answer>5</answer><|eos|>")
    # one user turn + generation prompt: exactly the sampler's prompt, and the same ids
    user = chat[1:2]
    prompt = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert prompt == chat_prompt("What is 2+3?") == render_chat(user, True)
    ours_tok = ChatTokenizer.from_file(tok_json)
    assert tok(prompt, add_special_tokens=False)["input_ids"] == ours_tok.encode(prompt)
    # system + user + assistant ids = system ids + our SFT example (prompt ids + response + EOS)
    p_ids, r_ids = sft_pair(ours_tok, "What is 2+3?", chat[2]["content"])
    full = tok.apply_chat_template(chat, tokenize=True, return_dict=False)
    full = full["input_ids"] if isinstance(full, dict) else full
    assert full == ours_tok.encode("<|system|>Be brief.") + p_ids + r_ids
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")


def test_stage_hf_folder_and_cli_export(tmp_path, tok_json):
    """A model stage's `put_hf_export` writes hf/ into its artifact; `deeprecipe export STAGE
    -o DIR` rebuilds the same folder from the committed artifact's model files."""
    import types

    from deeprecipe.pipeline import cli
    from deeprecipe.pipeline.store import ArtifactStore
    from deeprecipe.pipeline.task import StageContext
    from deeprecipe.workflows.train import put_hf_export

    store = ArtifactStore(str(tmp_path / "store"))
    ctx = StageContext(types.SimpleNamespace(artifact_store=store), "grpo", "0123456789abcdef")
    ours = model_of(300, attention="mla", mtp_depth=1)
    scratch = tmp_path / "scratch"
    export_hf_folder(ours, ours.cfg, tok_json, scratch)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        ctx.fs.put_file(str(scratch / name), ctx.output_path(name))
    put_hf_export(ctx, ours, tok_json, scratch)
    assert {f"hf/{n}" for n in hf_export.HF_FILES} <= set(ctx.outputs)
    for name, staged in ctx.staged.items():  # publish the attempt's files, as a stage's commit does
        if staged != name:
            store.publish(store.path("grpo", ctx.version, staged), store.path("grpo", ctx.version, name))
    store.commit_manifest("grpo", ctx.version, {
        "stage": "grpo", "version": ctx.version, "run": {"end": "2026-12-04T00:00:00"},
        "outputs": {"files": [{"name": n} for n in ctx.outputs]}})
    hf = tmp_path / "store" / "grpo" / ctx.version / "hf"
    assert cli.main(["--store", str(tmp_path / "store"), "export", "grpo", "-o",
                     str(tmp_path / "out")]) == 0
    for name in hf_export.HF_FILES:
        assert (tmp_path / "out" / name).read_bytes() == (hf / name).read_bytes(), name
    model = transformers.AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
    idx = torch.randint(0, 300, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=idx).logits, ours.eval()(idx)[0],
                                   atol=2e-4, rtol=1e-4)
    assert cli.main(["--store", str(tmp_path / "store"), "export", "nope", "-o",
                     str(tmp_path / "x")]) == 2
