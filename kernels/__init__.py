"""Triton kernels with plain-PyTorch references and dispatchers that fall back off-GPU
(``deeprecipe.kernels``). Imported under the bare name ``kernels`` (the checkout's root on
sys.path), this folder hands that name to the package that owns it: transformers >= 5 installs
a ``kernels`` distribution and imports it for its models."""
if __name__ == "kernels":
    from deeprecipe import hand_over_bare_name

    hand_over_bare_name(__name__)
else:
    from .moe_grouped import grouped_mm_triton, moe_experts, moe_experts_reference, select_backend
    from .rmsnorm import rms_norm, rmsnorm_reference, rmsnorm_triton, use_triton
    from .swiglu import swiglu, swiglu_reference, swiglu_triton

    __all__ = [
        "rms_norm", "rmsnorm_reference", "rmsnorm_triton", "use_triton",
        "swiglu", "swiglu_reference", "swiglu_triton",
        "moe_experts", "moe_experts_reference", "grouped_mm_triton", "select_backend",
    ]
