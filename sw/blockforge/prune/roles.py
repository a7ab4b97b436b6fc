"""Which linear layers of an encoder are prunable, found by a role table per ``model_type``.

A role is what a linear does inside an encoder layer: ``query``, ``key``, ``value``,
``attention_output`` (the attention output projection), ``ffn_in`` and ``ffn_out`` (the two FFN
matrices). Embeddings, pooler and classifier have no role and are never pruned by default.

Each supported ``model_type`` maps roles to regular expressions over module names (searched, so the
``bert.`` / ``roberta.`` prefix of a task model does not matter). A ``model_type`` missing from the table
falls back to every ``nn.Linear`` inside the model's base (encoder) module, except pooler and embedding
projections. A model with nothing to prune raises :class:`~blockforge.errors.UsageError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from ..errors import UsageError

__all__ = ["ROLE_TABLE", "PrunableLinear", "find_prunable_linears"]

_BERT_LIKE = {
    "query": r"encoder\.layer\.(\d+)\.attention\.self\.query$",
    "key": r"encoder\.layer\.(\d+)\.attention\.self\.key$",
    "value": r"encoder\.layer\.(\d+)\.attention\.self\.value$",
    "attention_output": r"encoder\.layer\.(\d+)\.attention\.output\.dense$",
    "ffn_in": r"encoder\.layer\.(\d+)\.intermediate\.dense$",
    "ffn_out": r"encoder\.layer\.(\d+)\.output\.dense$",
}

#: model_type -> {role: regex over module names; group 1 is the encoder layer index}
ROLE_TABLE: dict[str, dict[str, str]] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "distilbert": {
        "query": r"transformer\.layer\.(\d+)\.attention\.q_lin$",
        "key": r"transformer\.layer\.(\d+)\.attention\.k_lin$",
        "value": r"transformer\.layer\.(\d+)\.attention\.v_lin$",
        "attention_output": r"transformer\.layer\.(\d+)\.attention\.out_lin$",
        "ffn_in": r"transformer\.layer\.(\d+)\.ffn\.lin1$",
        "ffn_out": r"transformer\.layer\.(\d+)\.ffn\.lin2$",
    },
}

# Linears the generic fallback never prunes even when they sit inside the base model.
_GENERIC_EXCLUDE = re.compile(r"(^|\.)(pooler|embeddings?|embed_\w+|classifier|pre_classifier|lm_head)(\.|$)")


@dataclass(frozen=True)
class PrunableLinear:
    """One prunable ``nn.Linear``: its module name in the model, its role and encoder layer index."""

    name: str
    role: str
    layer_index: int | None
    module: nn.Linear


def find_prunable_linears(model: nn.Module) -> list[PrunableLinear]:
    """The prunable linears of ``model`` in module order.

    Uses ``ROLE_TABLE[model.config.model_type]`` when the type is known, otherwise the generic fallback.
    Raises UsageError if the model has no linear layer to prune (or a known type matches none).
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__
    table = ROLE_TABLE.get(model_type)
    found: list[PrunableLinear] = []
    if table is not None:
        compiled = [(role, re.compile(pattern)) for role, pattern in table.items()]
        for name, module in model.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            for role, pattern in compiled:
                match = pattern.search(name)
                if match:
                    found.append(PrunableLinear(name, role, int(match.group(1)), module))
                    break
    else:
        base = getattr(model, "base_model", model)
        full_names = {id(m): n for n, m in model.named_modules()}
        for name, module in base.named_modules():
            if not isinstance(module, nn.Linear) or _GENERIC_EXCLUDE.search(name):
                continue
            match = re.search(r"\.(\d+)\.", f".{name}.")
            found.append(PrunableLinear(full_names[id(module)], "linear",
                                        int(match.group(1)) if match else None, module))
    if not found:
        kind = "known" if table is not None else "unknown"
        raise UsageError(f"model type {model_type!r} ({kind}): no linear layers to prune")
    return found
