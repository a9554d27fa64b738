"""Triton kernels with plain-PyTorch references and dispatchers that fall back off-GPU."""
from .moe_grouped import grouped_mm_triton, moe_experts, moe_experts_reference, select_backend
from .rmsnorm import rms_norm, rmsnorm_reference, rmsnorm_triton, use_triton
from .swiglu import swiglu, swiglu_reference, swiglu_triton

__all__ = [
    "rms_norm", "rmsnorm_reference", "rmsnorm_triton", "use_triton",
    "swiglu", "swiglu_reference", "swiglu_triton",
    "moe_experts", "moe_experts_reference", "grouped_mm_triton", "select_backend",
]
