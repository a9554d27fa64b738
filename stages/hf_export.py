"""Our models as transformers checkpoints that load with no custom code.

    export_transformers(model, tokenizer.json, folder) -> folder/
        config.json, generation_config.json, model.safetensors   (a transformers architecture)
        tokenizer.json, tokenizer_config.json (chat_template), special_tokens_map.json
        deeprecipe_export.json                                  (what was mapped, what was dropped)

Which architecture (`hf_architecture`):

    MoE layers + MLA   -> deepseek_v3  (DeepSeekMoE with MLA: V2/V3's own layout)
    MoE layers + MHA   -> glm4_moe     (deepseek_v3 has no MHA: its keys are one shared RoPE
                                        head; glm4_moe is the same V3 router and MoE over MHA)
    all dense  + MHA   -> llama        (the dense student)
    all dense  + MLA   -> deepseek_v3  with first_k_dense_replace = n_layers (every layer dense)

What carries over exactly (fp32: the logits agree to rounding, tests/test_hf_export.py):
- Router (V3): sigmoid scores; top-k of scores + e_score_correction_bias (our `expert_bias`)
  with n_group = topk_group = 1 (we route without groups); the chosen raw scores normalised
  over the k (norm_topk_prob) times routed_scaling_factor (our `route_scale`). transformers
  adds 1e-20 to the normaliser, below fp32 resolution of a sum of k sigmoids.
- Experts: DeepSeek's released layout, one `mlp.experts.{e}.{gate,up,down}_proj.weight` per
  expert (what vLLM and SGLang read; transformers fuses them on load). Shared experts: one
  SwiGLU of n_shared * d_ff_expert, as ours.
- RoPE: we rotate halves (x1 = first half, x2 = second half of the rope dims). deepseek_v3
  is exported with `rope_interleave: true`, DeepSeek's convention that vLLM/SGLang assume:
  the q_pe / k_pe output rows of q_proj (or q_b_proj) and kv_a_proj_with_mqa are permuted so
  pair i of the interleaved layout is (x1_i, x2_i); llama and glm4_moe rotate halves as we do
  (partial_rotary_factor 1.0), no permutation.
- Softmax scale: 1/sqrt(qk_nope + qk_rope) (MLA), 1/sqrt(head_dim) (MHA), as ours.

Not expressible, stated in deeprecipe_export.json["notes"]:
- the MTP block (mtp.*): dropped, the model predicts the next token only
  (num_nextn_predict_layers 0); DeepSeek's transformers checkpoints skip it too.
- MLA's q_a_layernorm / kv_a_layernorm: transformers fixes their eps at 1e-6; with another
  norm_eps the export differs from our model in those two norms (noted).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from .moe_model import MoEConfig, MoETransformer
from .r1.chat import CHAT_TEMPLATE
from .tokenizer_train import (ASSISTANT, BOS, EOS, PAD, SYSTEM, USER, special_token_ids,
                              transformers_config)

MANIFEST = "deeprecipe_export.json"
HF_EPS_FIXED = 1e-6  # transformers' DeepseekV3Attention builds its two latent norms with it


def hf_architecture(cfg: MoEConfig) -> str:
    """The transformers model_type our config exports to (see the module docstring)."""
    dense = cfg.n_dense_layers >= cfg.n_layers
    if cfg.attention == "mla":
        return "deepseek_v3"
    return "llama" if dense else "glm4_moe"


def _rope(cfg: MoEConfig, **extra) -> dict:
    # transformers 5 reads rope_parameters; rope_theta at the top level is for older readers
    return {"rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta, **extra},
            "rope_theta": cfg.rope_theta}


def hf_config(cfg: MoEConfig, ids: dict[str, int], dtype: torch.dtype) -> dict:
    """config.json contents for `cfg`; ids: our special token ids."""
    arch = hf_architecture(cfg)
    common = {"vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
              "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
              "num_key_value_heads": cfg.n_heads, "hidden_act": "silu",
              "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
              "initializer_range": cfg.init_std, "tie_word_embeddings": False,
              "attention_bias": False, "attention_dropout": 0.0, "use_cache": True,
              "bos_token_id": ids[BOS], "eos_token_id": ids[EOS], "pad_token_id": ids[PAD],
              "dtype": str(dtype).removeprefix("torch.")}
    moe = {"intermediate_size": cfg.d_ff_dense, "moe_intermediate_size": cfg.d_ff_expert,
           "n_shared_experts": cfg.n_shared_experts, "n_routed_experts": cfg.n_routed_experts,
           "num_experts_per_tok": cfg.top_k, "routed_scaling_factor": cfg.route_scale,
           "n_group": 1, "topk_group": 1, "norm_topk_prob": True,
           "first_k_dense_replace": min(cfg.n_dense_layers, cfg.n_layers),
           "num_nextn_predict_layers": 0,
           # read by vLLM / SGLang's DeepSeek loaders (V3's config.json spelling)
           "scoring_func": "sigmoid", "topk_method": "noaux_tc", "moe_layer_freq": 1}
    if arch == "llama":
        return {**common, "architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "head_dim": cfg.head_dim, "intermediate_size": cfg.d_ff_dense,
                "mlp_bias": False, "pretraining_tp": 1, **_rope(cfg)}
    if arch == "glm4_moe":
        return {**common, **moe, "architectures": ["Glm4MoeForCausalLM"],
                "model_type": "glm4_moe", "head_dim": cfg.head_dim, "use_qk_norm": False,
                "partial_rotary_factor": 1.0, **_rope(cfg, partial_rotary_factor=1.0)}
    return {**common, **moe, "architectures": ["DeepseekV3ForCausalLM"],
            "model_type": "deepseek_v3",
            "q_lora_rank": cfg.q_lora_rank or None, "kv_lora_rank": cfg.kv_lora_rank,
            "qk_nope_head_dim": cfg.qk_nope_head_dim, "qk_rope_head_dim": cfg.qk_rope_head_dim,
            "v_head_dim": cfg.v_head_dim, "rope_interleave": True, "rope_scaling": None,
            **_rope(cfg)}


def _interleave_rows(w: torch.Tensor, n_blocks: int, block: int, rope: int) -> torch.Tensor:
    """Rows of w in n_blocks blocks of `block` rows whose last `rope` rows are RoPE dims in our
    rotate-half layout (x1_0..x1_{R-1}, x2_0..x2_{R-1}); returns them interleaved
    (x1_0, x2_0, x1_1, x2_1, ...), the layout `rope_interleave` expects."""
    half = rope // 2
    order = torch.arange(rope).view(2, half).t().reshape(-1)  # 0, R, 1, R+1, ...
    idx = torch.arange(n_blocks * block).view(n_blocks, block)
    idx[:, block - rope:] = idx[:, block - rope:][:, order]
    return w.index_select(0, idx.reshape(-1))


def hf_state_dict(cfg: MoEConfig, state: dict[str, torch.Tensor]
                  ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(transformers tensors, our dropped keys) from our model's state dict. Tensors come
    back on the CPU, contiguous, sharing no storage (what safetensors writes)."""
    sd = {k: v.detach().cpu() for k, v in state.items()}
    arch = hf_architecture(cfg)
    out: dict[str, torch.Tensor] = {"model.embed_tokens.weight": sd.pop("embed.weight"),
                                    "model.norm.weight": sd.pop("norm.weight"),
                                    "lm_head.weight": sd.pop("head.weight")}
    H, dq = cfg.n_heads, cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
    for i in range(cfg.n_layers):
        ours, hf = f"layers.{i}.", f"model.layers.{i}."

        def move(src: str, dst: str, fn=None):
            t = sd.pop(ours + src)
            out[hf + dst] = fn(t) if fn else t

        move("attn_norm.weight", "input_layernorm.weight")
        move("ffn_norm.weight", "post_attention_layernorm.weight")
        if cfg.attention == "mha":
            for a, b in (("wq", "q_proj"), ("wk", "k_proj"), ("wv", "v_proj"), ("wo", "o_proj")):
                move(f"attn.{a}.weight", f"self_attn.{b}.weight")
        else:
            q_rope = lambda w: _interleave_rows(w, H, dq, cfg.qk_rope_head_dim)  # noqa: E731
            if cfg.q_lora_rank > 0:
                move("attn.wq_a.weight", "self_attn.q_a_proj.weight")
                move("attn.q_norm.weight", "self_attn.q_a_layernorm.weight")
                move("attn.wq_b.weight", "self_attn.q_b_proj.weight", q_rope)
            else:
                move("attn.wq.weight", "self_attn.q_proj.weight", q_rope)
            move("attn.wkv_a.weight", "self_attn.kv_a_proj_with_mqa.weight",
                 lambda w: _interleave_rows(w, 1, w.shape[0], cfg.qk_rope_head_dim))
            move("attn.kv_norm.weight", "self_attn.kv_a_layernorm.weight")
            move("attn.wkv_b.weight", "self_attn.kv_b_proj.weight")
            move("attn.wo.weight", "self_attn.o_proj.weight")
        if i < cfg.n_dense_layers:
            for a, b in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
                move(f"ffn.{a}.weight", f"mlp.{b}.weight")
            continue
        move("ffn.router.weight", "mlp.gate.weight", lambda w: w.float())
        move("ffn.router.expert_bias", "mlp.gate.e_score_correction_bias", lambda b: b.float())
        g, u, d = (sd.pop(ours + f"ffn.{n}") for n in ("w_gate_EDF", "w_up_EDF", "w_down_EFD"))
        for e in range(cfg.n_routed_experts):
            p = hf + f"mlp.experts.{e}."
            out[p + "gate_proj.weight"] = g[e].t().contiguous()   # (F, D)
            out[p + "up_proj.weight"] = u[e].t().contiguous()     # (F, D)
            out[p + "down_proj.weight"] = d[e].t().contiguous()   # (D, F)
        if cfg.n_shared_experts > 0:
            for a, b in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
                move(f"ffn.shared.{a}.weight", f"mlp.shared_experts.{b}.weight")
        elif arch != "llama":  # transformers always builds the shared SwiGLU: give it width 0
            D, dt = cfg.d_model, g.dtype
            for b, shape in (("gate_proj", (0, D)), ("up_proj", (0, D)), ("down_proj", (D, 0))):
                out[hf + f"mlp.shared_experts.{b}.weight"] = torch.zeros(shape, dtype=dt)
    dropped = sorted(sd)
    unexpected = [k for k in dropped if not k.startswith("mtp.")]
    if unexpected:
        raise ValueError(f"hf_state_dict: unmapped weights {unexpected[:5]}")
    return {k: v.contiguous() for k, v in out.items()}, dropped


def write_tokenizer(tokenizer_json: str | Path, folder: Path, model_max_length: int) -> None:
    """tokenizer.json (ours, as is), tokenizer_config.json with bos/eos/pad and our
    `CHAT_TEMPLATE`, special_tokens_map.json: what `AutoTokenizer.from_pretrained` reads."""
    from tokenizers import Tokenizer
    shutil.copyfile(tokenizer_json, folder / "tokenizer.json")
    tok = Tokenizer.from_file(str(tokenizer_json))
    config, special_map = transformers_config(tok, model_max_length)
    config["chat_template"] = CHAT_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")


def export_notes(cfg: MoEConfig, dropped: list[str]) -> list[str]:
    notes = []
    if dropped:
        notes.append(f"MTP head dropped ({len(dropped)} tensors, mtp.*): transformers' "
                     f"{hf_architecture(cfg)} predicts the next token only; mtp_depth "
                     f"{cfg.mtp_depth} is not carried over")
    if cfg.attention == "mla" and cfg.norm_eps != HF_EPS_FIXED:
        notes.append(f"norm_eps {cfg.norm_eps} != {HF_EPS_FIXED}: transformers' deepseek_v3 "
                     "fixes q_a_layernorm / kv_a_layernorm eps at 1e-6, so those norms differ")
    if cfg.attention == "mha" and cfg.n_dense_layers < cfg.n_layers:
        notes.append("MHA inside a MoE: deepseek_v3 cannot hold it (its attention is MLA with "
                     "one shared RoPE key), exported as glm4_moe: the same sigmoid router with "
                     "correction bias, shared experts and first-k dense layers over MHA")
    if cfg.attention == "mla" and cfg.n_dense_layers >= cfg.n_layers:
        notes.append("dense model with MLA: exported as deepseek_v3 with every layer dense "
                     "(first_k_dense_replace = num_hidden_layers); llama has no MLA")
    return notes


def export_transformers(model: MoETransformer, tokenizer_json: str | Path,
                        folder: str | Path) -> dict:
    """Write `model` (and our tokenizer) as a transformers folder; returns the export
    manifest (also written as deeprecipe_export.json)."""
    return export_state(model.cfg, model.state_dict(), tokenizer_json, folder)


def export_state(cfg: MoEConfig, state: dict[str, torch.Tensor], tokenizer_json: str | Path,
                 folder: str | Path) -> dict:
    """`export_transformers` from a config and our state dict (no model is built)."""
    from tokenizers import Tokenizer
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ids = special_token_ids(Tokenizer.from_file(str(tokenizer_json)))
    tensors, dropped = hf_state_dict(cfg, state)
    dtype = tensors["model.embed_tokens.weight"].dtype
    config = hf_config(cfg, ids, dtype)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen = {"bos_token_id": ids[BOS], "eos_token_id": ids[EOS], "pad_token_id": ids[PAD]}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    write_tokenizer(tokenizer_json, out, cfg.max_seq_len)
    manifest = {"model_type": config["model_type"], "architectures": config["architectures"],
                "source_config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
                "tensors": len(tensors), "dropped": dropped, "notes": export_notes(cfg, dropped),
                "chat_format": {"system": SYSTEM, "user": USER, "assistant": ASSISTANT,
                                "eos": EOS}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


HF_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", MANIFEST)
"""What `export_transformers` writes (the `hf/` folder of every model artifact)."""


def export_folder(src: str | Path, dst: str | Path) -> dict:
    """A transformers folder from one of our model folders (config.json + model.safetensors +
    tokenizer.json: a model artifact or an export)."""
    import dataclasses

    from safetensors.torch import load_file
    src = Path(src)
    raw = json.loads((src / "config.json").read_text())
    cfg = MoEConfig(**{f.name: raw[f.name] for f in dataclasses.fields(MoEConfig)
                       if f.name in raw})
    return export_state(cfg, load_file(str(src / "model.safetensors")), src / "tokenizer.json",
                        dst)
