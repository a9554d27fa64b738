"""A user's transformers checkpoint imported as our model (stages.hf_import): same logits on
its vocabulary, our special tokens added; and `--base-model` through Luigi."""
from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from deeprecipe.stages import hf_import  # noqa: E402
from deeprecipe.stages.r1.chat import ChatTokenizer, chat_prompt  # noqa: E402
from deeprecipe.stages.tokenizer_train import SPECIAL_TOKENS  # noqa: E402
from deeprecipe.stages.training_io import load_model  # noqa: E402

torch.set_num_threads(1)


def user_tokenizer(folder, texts):
    """A base model's own tokenizer: byte-level BPE with <s> / </s>, none of our tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                                eos_token="</s>")
    fast.save_pretrained(folder)
    return tok.get_vocab_size()


def tiny_deepseek_v3(folder, vocab: int, seed: int = 0, **over):
    """A tiny deepseek_v3 made with transformers' own config class, saved."""
    cfg = transformers.DeepseekV3Config(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
        n_routed_experts=8, num_experts_per_tok=2, routed_scaling_factor=1.5, n_group=1,
        topk_group=1, first_k_dense_replace=1, kv_lora_rank=32, q_lora_rank=None,
        qk_rope_head_dim=16, qk_nope_head_dim=16, v_head_dim=16, max_position_embeddings=512,
        num_mtp_layers=0, bos_token_id=0, eos_token_id=1, **over)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for n, b in model.named_buffers():
            if n.endswith("e_score_correction_bias"):
                b.copy_(torch.randn_like(b) * 0.05)
    model.save_pretrained(folder)
    return model


TEXTS = ["the cat sat on the mat", "count 1 2 3 and 4", "what is 2 + 3? it is 5"] * 5


@pytest.mark.parametrize("kind", ["deepseek_v3", "llama_gqa"])
def test_import_keeps_logits_and_adds_our_tokens(tmp_path, kind):
    src = tmp_path / "user"
    vocab = user_tokenizer(src, TEXTS)
    if kind == "deepseek_v3":
        theirs = tiny_deepseek_v3(src, vocab)
    else:
        cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=96,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, max_position_embeddings=256)
        torch.manual_seed(0)
        theirs = transformers.AutoModelForCausalLM.from_config(cfg).eval()
        theirs.save_pretrained(src)
    info = hf_import.import_folder(src, tmp_path / "ours")
    assert info["added_tokens"] == [t for t in SPECIAL_TOKENS]
    ours = load_model(str(tmp_path / "ours")).eval()
    assert ours.cfg.vocab_size == vocab + len(SPECIAL_TOKENS)
    idx = torch.randint(0, vocab, (2, 40))
    with torch.no_grad():
        a = ours(idx)[0][..., :vocab]
        b = theirs(input_ids=idx).logits
    torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)
    tok = ChatTokenizer.from_file(tmp_path / "ours" / "tokenizer.json")
    ids = tok.encode(chat_prompt("what is 2 + 3?"))
    assert ids[0] == tok._id("<|user|>") and ids[-1] == tok._id("<|assistant|>")
    assert tok.decode_response(tok.encode("<think>\nok\n</think>") + [tok.eos_id]) == \
        "<think>\nok\n</think>"
    # the folder's sha256 (the import stage's version) follows its bytes
    before = hf_import.folder_sha256(src)
    (src / "config.json").write_text(json.dumps({**json.loads((src / "config.json").read_text()),
                                                 "x": 1}))
    assert hf_import.folder_sha256(src) != before


def test_base_model_runs_cold_start_grpo_evaluate_through_luigi(tmp_path):
    """`--base-model FOLDER`: a tiny deepseek_v3 saved by transformers is imported (stage
    base_model, versioned by its files' sha256) and cold_start_sft -> grpo -> evaluate run
    from it, with no pretraining stage in the DAG."""
    from deeprecipe.pipeline.store import ArtifactStore
    from tests.conftest import luigi_cmd, run

    src = tmp_path / "user"
    vocab = user_tokenizer(src, TEXTS)
    tiny_deepseek_v3(src, vocab)
    store = str(tmp_path / "store")
    run(luigi_cmd("--module", "workflows", "Evaluate", "--store", store, "--base-model", str(src),
                  "--Evaluate-models", '["base", "cold_start", "grpo"]', "--Evaluate-k", "2",
                  "--Evaluate-max-problems", "8", "--Evaluate-max-new-tokens", "16"),
        timeout=1500)
    s = ArtifactStore(store)
    assert "pretrain_moe" not in s.stages() and "tokenize_pack" not in s.stages()
    base = s.newest("base_model")
    assert base["key"]["params"]["base_model_sha256"] == hf_import.folder_sha256(src)
    assert base["outputs"]["metrics"]["added_tokens"] == list(SPECIAL_TOKENS)
    cold = s.newest("cold_start_sft")
    assert cold["upstream"]["base"]["stage"] == "base_model"
    assert s.newest("grpo")["upstream"]["init"]["stage"] == "cold_start_sft"
    models = s.newest("evaluate")["outputs"]["metrics"]["models"]
    assert sorted(models) == ["base", "cold_start", "grpo"]
    assert models["base"]["stage"] == "base_model"
    # the post-trained model is a transformers checkpoint again (deepseek_v3, our tokens)
    hf = s.path("grpo", s.newest("grpo")["version"], "hf")
    model = transformers.AutoModelForCausalLM.from_pretrained(hf)
    assert model.config.model_type == "deepseek_v3"
    assert model.config.vocab_size == vocab + len(SPECIAL_TOKENS)
