"""A user's transformers checkpoint as one of our model folders, to post-train from.

    import_folder(src, dst) -> dst/config.json (MoEConfig), model.safetensors, tokenizer.json

The inverse of `stages.hf_export` for the architectures our MoETransformer computes exactly:

    deepseek_v3  -> MLA + DeepSeekMoE (the V3 router; group-limited routing only where it
                    limits nothing, topk_group == n_group); RoPE rows de-interleaved when
                    rope_interleave; experts per key (DeepSeek's release) or fused
                    (transformers 5's save_pretrained)
    glm4_moe     -> MHA + the same MoE (partial_rotary_factor 1, no qk norm, no biases)
    llama        -> dense MHA; grouped KV heads (GQA) repeated into full heads (same function)

Refused with the reason (ValueError): other model types, RoPE scaling (yarn, llama3, ...),
attention or MLP biases, activations other than SiLU, unnormalised top-k gates, grouped
routing that limits the choice. The MTP layers of a deepseek_v3 checkpoint are skipped.

Tokenizer: the folder's tokenizer.json, with every special token of our chat and reasoning
format (`stages.tokenizer_train.SPECIAL_TOKENS`) that it lacks added as a special token; the
embedding and head grow to the new vocabulary, new rows set to the mean of the old rows. Its
post-processor is removed: our loops encode the prompt and the response separately and join
them, so a tokenizer that adds a BOS to every encode would put one inside the sequence.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .moe_model import MoEConfig, MoETransformer
from .tokenizer_train import SPECIAL_TOKENS
from .training_io import model_config_json

SUPPORTED = ("deepseek_v3", "glm4_moe", "llama")


def folder_sha256(folder: str | Path) -> str:
    """sha256 over (relative path, sha256 of the bytes) of every file of the folder, sorted:
    the version of an imported base model."""
    root = Path(folder)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        fh = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                fh.update(chunk)
        h.update(f"{rel}\0{fh.hexdigest()}\n".encode())
    return h.hexdigest()


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of model.safetensors or of the shards a model.safetensors.index.json lists."""
    index = folder / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists()
             else ["model.safetensors"])
    out = {}
    for name in files:
        with safe_open(str(folder / name), framework="pt") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
    return out


def _rope_theta(raw: dict) -> float:
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    kind = rope.get("rope_type") or rope.get("type") or "default"
    if kind != "default":
        raise ValueError(f"RoPE type {kind!r} is not supported (our RoPE is the default one)")
    return float(rope.get("rope_theta") or raw.get("rope_theta") or 10000.0)


def config_of(raw: dict) -> MoEConfig:
    """Our MoEConfig for a transformers config.json (raises what we cannot compute)."""
    mt = raw.get("model_type")
    if mt not in SUPPORTED:
        raise ValueError(f"model_type {mt!r}: supported are {SUPPORTED}")
    if raw.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {raw['hidden_act']!r}: only SiLU (SwiGLU) is supported")
    if raw.get("attention_bias") or raw.get("mlp_bias"):
        raise ValueError("attention / MLP biases are not supported")
    D, H, L = raw["hidden_size"], raw["num_attention_heads"], raw["num_hidden_layers"]
    common = dict(vocab_size=raw["vocab_size"], d_model=D, n_layers=L, n_heads=H,
                  d_ff_dense=raw["intermediate_size"], max_seq_len=raw["max_position_embeddings"],
                  rope_theta=_rope_theta(raw), norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
                  mtp_depth=0, init_std=float(raw.get("initializer_range", 0.02)))
    if mt == "llama":
        return MoEConfig(**common, attention="mha", head_dim=raw.get("head_dim") or D // H,
                         n_dense_layers=L)
    if (raw.get("topk_group") or 1) < (raw.get("n_group") or 1):
        raise ValueError(f"group-limited routing (topk_group {raw['topk_group']} of n_group "
                         f"{raw['n_group']}) is not supported: our router chooses among all")
    if not raw.get("norm_topk_prob", True):
        raise ValueError("norm_topk_prob false: our router always normalises the top-k gates")
    moe = dict(n_dense_layers=min(raw.get("first_k_dense_replace", 0), L),
               n_shared_experts=raw.get("n_shared_experts", 1),
               n_routed_experts=raw["n_routed_experts"], top_k=raw["num_experts_per_tok"],
               d_ff_expert=raw["moe_intermediate_size"],
               route_scale=float(raw.get("routed_scaling_factor", 1.0)))
    if mt == "glm4_moe":
        rope = raw.get("rope_parameters") or {}
        if float(rope.get("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0))) != 1.0:
            raise ValueError("glm4_moe with partial_rotary_factor != 1 is not supported")
        if raw.get("use_qk_norm"):
            raise ValueError("glm4_moe with use_qk_norm is not supported")
        if raw.get("num_key_value_heads", H) != H:
            raise ValueError("glm4_moe with grouped KV heads is not supported")
        return MoEConfig(**common, **moe, attention="mha", head_dim=raw.get("head_dim") or D // H)
    return MoEConfig(**common, **moe, attention="mla", q_lora_rank=raw.get("q_lora_rank") or 0,
                     kv_lora_rank=raw["kv_lora_rank"], qk_nope_head_dim=raw["qk_nope_head_dim"],
                     qk_rope_head_dim=raw["qk_rope_head_dim"], v_head_dim=raw["v_head_dim"])


def _deinterleave_rows(w: torch.Tensor, n_blocks: int, block: int, rope: int) -> torch.Tensor:
    """The inverse of `hf_export._interleave_rows`."""
    order = torch.cat([torch.arange(0, rope, 2), torch.arange(1, rope, 2)])  # x1s then x2s
    idx = torch.arange(n_blocks * block).view(n_blocks, block)
    idx[:, block - rope:] = idx[:, block - rope:][:, order]
    return w.index_select(0, idx.reshape(-1))


def state_of(raw: dict, cfg: MoEConfig, hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict from a transformers one (raw: its config.json)."""
    sd: dict[str, torch.Tensor] = {"embed.weight": hf["model.embed_tokens.weight"],
                                   "norm.weight": hf["model.norm.weight"]}
    sd["head.weight"] = hf.get("lm_head.weight", hf["model.embed_tokens.weight"]).clone()
    H, dq = cfg.n_heads, cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
    interleaved = raw.get("model_type") == "deepseek_v3" and raw.get("rope_interleave", True)
    for i in range(cfg.n_layers):
        src, dst = f"model.layers.{i}.", f"layers.{i}."

        def take(a: str, b: str, fn=None):
            t = hf[src + a]
            sd[dst + b] = fn(t) if fn else t

        take("input_layernorm.weight", "attn_norm.weight")
        take("post_attention_layernorm.weight", "ffn_norm.weight")
        if cfg.attention == "mha":
            kv = raw.get("num_key_value_heads") or H
            rep = lambda w: w.view(kv, -1, w.shape[-1]).repeat_interleave(  # noqa: E731
                H // kv, dim=0).reshape(-1, w.shape[-1])
            take("self_attn.q_proj.weight", "attn.wq.weight")
            take("self_attn.k_proj.weight", "attn.wk.weight", rep)
            take("self_attn.v_proj.weight", "attn.wv.weight", rep)
            take("self_attn.o_proj.weight", "attn.wo.weight")
        else:
            q_fn = ((lambda w: _deinterleave_rows(w, H, dq, cfg.qk_rope_head_dim))
                    if interleaved else None)
            kv_fn = ((lambda w: _deinterleave_rows(w, 1, w.shape[0], cfg.qk_rope_head_dim))
                     if interleaved else None)
            if cfg.q_lora_rank > 0:
                take("self_attn.q_a_proj.weight", "attn.wq_a.weight")
                take("self_attn.q_a_layernorm.weight", "attn.q_norm.weight")
                take("self_attn.q_b_proj.weight", "attn.wq_b.weight", q_fn)
            else:
                take("self_attn.q_proj.weight", "attn.wq.weight", q_fn)
            take("self_attn.kv_a_proj_with_mqa.weight", "attn.wkv_a.weight", kv_fn)
            take("self_attn.kv_a_layernorm.weight", "attn.kv_norm.weight")
            take("self_attn.kv_b_proj.weight", "attn.wkv_b.weight")
            take("self_attn.o_proj.weight", "attn.wo.weight")
        if i < cfg.n_dense_layers:
            for a, b in (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2")):
                take(f"mlp.{a}.weight", f"ffn.{b}.weight")
            continue
        take("mlp.gate.weight", "ffn.router.weight")
        sd[dst + "ffn.router.expert_bias"] = hf.get(
            src + "mlp.gate.e_score_correction_bias", torch.zeros(cfg.n_routed_experts)).float()
        E, Fe = cfg.n_routed_experts, cfg.d_ff_expert
        if src + "mlp.experts.gate_up_proj" in hf:  # fused (E, 2F, D), down (E, D, F)
            gu = hf[src + "mlp.experts.gate_up_proj"]
            sd[dst + "ffn.w_gate_EDF"] = gu[:, :Fe].transpose(1, 2).contiguous()
            sd[dst + "ffn.w_up_EDF"] = gu[:, Fe:].transpose(1, 2).contiguous()
            sd[dst + "ffn.w_down_EFD"] = hf[src + "mlp.experts.down_proj"].transpose(1, 2).contiguous()
        else:
            e = src + "mlp.experts.{}.{}.weight"
            sd[dst + "ffn.w_gate_EDF"] = torch.stack([hf[e.format(j, "gate_proj")].t() for j in range(E)])
            sd[dst + "ffn.w_up_EDF"] = torch.stack([hf[e.format(j, "up_proj")].t() for j in range(E)])
            sd[dst + "ffn.w_down_EFD"] = torch.stack([hf[e.format(j, "down_proj")].t() for j in range(E)])
        if cfg.n_shared_experts > 0:
            for a, b in (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2")):
                take(f"mlp.shared_experts.{a}.weight", f"ffn.shared.{b}.weight")
    return {k: v.contiguous() for k, v in sd.items()}


def chat_tokenizer(src: Path):
    """(tokenizer with our special tokens, the tokens it lacked)."""
    from tokenizers import AddedToken, Tokenizer
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    tok.post_processor = None
    return tok, missing


def grow_vocab(sd: dict[str, torch.Tensor], vocab: int) -> dict[str, torch.Tensor]:
    """Embedding and head rows up to `vocab`, the new ones the mean of the old."""
    for k in ("embed.weight", "head.weight"):
        w = sd[k]
        if w.shape[0] < vocab:
            extra = w.float().mean(0, keepdim=True).to(w.dtype).expand(vocab - w.shape[0], -1)
            sd[k] = torch.cat([w, extra])
    return sd


def import_folder(src: str | Path, dst: str | Path) -> dict:
    """Our model folder (config.json + model.safetensors + tokenizer.json) from a transformers
    folder; returns what was done (for the stage's metrics)."""
    src, out = Path(src), Path(dst)
    raw = json.loads((src / "config.json").read_text())
    cfg = config_of(raw)
    tok, missing = chat_tokenizer(src)
    vocab = max(cfg.vocab_size, tok.get_vocab_size())
    cfg = dataclasses.replace(cfg, vocab_size=vocab)
    sd = grow_vocab(state_of(raw, cfg, read_tensors(src)), vocab)
    with torch.device("meta"):  # the key set and shapes our model expects, nothing allocated
        want = {k: tuple(v.shape) for k, v in MoETransformer(cfg).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in sd.items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:6]
        raise ValueError(f"import of {src}: weights do not fit our model: {diff}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(model_config_json(cfg), indent=1))
    save_file(sd, str(out / "model.safetensors"))
    tok.save(str(out / "tokenizer.json"))
    return {"model_type": raw["model_type"], "vocab_before": raw["vocab_size"],
            "vocab_size": vocab, "added_tokens": missing,
            "params": sum(v.numel() for v in sd.values()), "attention": cfg.attention,
            "n_layers": cfg.n_layers, "n_dense_layers": cfg.n_dense_layers}
