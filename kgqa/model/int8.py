"""int8 linear layers for answering on a CPU: weights int8 with one scale per output, each input
row quantised to int8 with a scale of its own, the product in integers (`torch._int_mm`).

Why per row: a row's result then depends on that row alone, so a question gets the same scores
and confidence whatever questions are batched beside it (dynamic quantisation, `torch.ao`'s,
scales a whole batch's activations by one number: a question's confidence moved with its
batch-mates). Why int8 at all: a pretrained-size model's passes on a CPU are its linear layers'
arithmetic (docs/benchmarks.md). Embeddings, norms and the attention arithmetic stay float.
"""
from __future__ import annotations

import copy

import torch

from kgqa.errors import KgqaError

_LEVELS = 127.0  # symmetric int8: -127..127, so a row's largest magnitude maps to ±127


class Int8Linear(torch.nn.Module):
    """`torch.nn.Linear`'s forward in int8: weights quantised per output once, inputs per row
    at each call."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / _LEVELS
        quantised = torch.round(weight / scale[:, None]).clamp(-_LEVELS, _LEVELS).to(torch.int8)
        self.register_buffer("weight_t", quantised.t().contiguous())  # (in, out), as `_int_mm` takes it
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The int8 weights as a Linear holds them, (out, in): transformers' T5 reads their dtype."""
        return self.weight_t.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        if rows.shape[0] == 0:
            return x.new_zeros(*x.shape[:-1], self.out_features)
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_min_(1e-12).div_(_LEVELS)
        quantised = torch.round(rows / scale).to(torch.int8)
        out = torch._int_mm(quantised, self.weight_t).float()
        out.mul_(scale).mul_(self.weight_scale)  # in place: a lone question's pass is mostly overhead
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantized_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the model with every linear layer an `Int8Linear`, for answering on a CPU (the
    model given is left as it is). Refused on other devices (the integer kernel is the CPU's)."""
    if next(model.parameters()).device.type != "cpu":
        raise KgqaError(f"int8 quantisation runs on the CPU, not {next(model.parameters()).device}")
    quantised = copy.deepcopy(model)
    for parent in list(quantised.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, Int8Linear(child))
    return quantised
