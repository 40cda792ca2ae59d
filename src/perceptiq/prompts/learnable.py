"""Learnable text context (CoOp; GRMP-IQA section 3.2, the "text meta-prompt").

Each class prompt is ``[v_1] ... [v_M] [class words].`` where the M context vectors ``v_m`` (width W of
the text transformer) are shared by all classes and learned; the class words ("high quality", "low
quality") stay fixed token embeddings. The tokenizer sees the placeholder string ``"X X X X high
quality."``; after the embedding lookup the placeholder rows are replaced by the context vectors, and the
text transformer runs on those embeddings (``ClipBackbone.encode_text_embeddings``).

The module holds only the context. The token embeddings around it (start-of-text, class words, '.',
end-of-text) are looked up in the backbone's token table on every call, so they follow that table when
it is loaded from a checkpoint or trained. It keeps a plain (unregistered) reference to the backbone so
that a model owning both does not list the backbone's weights twice in its ``state_dict``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..backbones import ClipBackbone
from .fixed import quality_class_words

CONTEXT_PLACEHOLDER = "X"   # one BPE token in CLIP's vocabulary ("x</w>")
RANDOM_INIT_STD = 0.02      # CoOp's initialisation of generic context vectors


def _placeholder_prompts(class_words: list[str], n_ctx: int) -> list[str]:
    prefix = " ".join([CONTEXT_PLACEHOLDER] * n_ctx)
    return [f"{prefix} {words}." if n_ctx else f"{words}." for words in class_words]


class LearnableTextContext(nn.Module):
    """M learnable context vectors shared across classes, placed before the class words.

    backbone: the CLIP whose text encoder turns the prompts into features.
    class_words: one entry per class (default: ``quality_class_words()``, i.e. high, low).
    n_ctx: M, the number of context vectors (GRMP-IQA: 4).
    init: ``"random"`` (normal, std 0.02, seeded by ``seed``) or a phrase of exactly ``n_ctx`` tokens
        (e.g. ``"a photo of a"``) whose token embeddings start the context.
    learnable: False keeps the context as a frozen buffer (hand-written prompts through the same path).

    ``forward() -> [C, D]`` text features (L2-normalised), one row per class, computed with the text
    encoder's *current* parameters (so they follow fine-tuned text blocks).
    """

    def __init__(self, backbone: ClipBackbone, class_words: list[str] | None = None, *, n_ctx: int = 4,
                 init: str = "random", seed: int = 0, learnable: bool = True):
        super().__init__()
        class_words = list(quality_class_words() if class_words is None else class_words)
        if not class_words or any(not isinstance(w, str) or not w.strip() for w in class_words):
            raise ValueError(f"class_words must be non-empty strings, got {class_words!r}")
        if not isinstance(n_ctx, int) or n_ctx < 1:
            raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        if not learnable and init == "random":
            raise ValueError("a frozen random text context is meaningless: give init a phrase of "
                             f"{n_ctx} tokens (e.g. 'a photo of a') or make the context learnable")
        self._backbone_ref = (backbone,)  # a tuple hides it from nn.Module's registration
        self.class_words = class_words
        self.n_ctx = n_ctx
        self.init = init
        self.prompts = _placeholder_prompts(class_words, n_ctx)

        device = next(backbone.parameters()).device
        tokens = backbone.tokenize(self.prompts).to(device)                  # [C, L]
        self._check_placeholders(backbone, tokens)
        self.register_buffer("tokens", tokens, persistent=False)
        table = backbone.clip.token_embedding.weight                        # [vocabulary, W]
        context = self._initial_context(backbone, init, seed, width=table.shape[-1],
                                        dtype=table.dtype, device=device)
        if learnable:
            self.ctx = nn.Parameter(context)   # [M, W]
        else:
            self.register_buffer("ctx", context)

    @property
    def backbone(self) -> ClipBackbone:
        return self._backbone_ref[0]

    def _check_placeholders(self, backbone: ClipBackbone, tokens: torch.Tensor) -> None:
        placeholder = backbone.tokenize([CONTEXT_PLACEHOLDER])[0, 1].item()
        got = tokens[:, 1:1 + self.n_ctx]
        if not bool((got == placeholder).all()):
            raise ValueError("the tokenizer did not map the context placeholder to one token per vector; "
                             "this backbone's tokenizer is not supported by LearnableTextContext")

    def _initial_context(self, backbone: ClipBackbone, init: str, seed: int, *, width: int,
                         dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        if init == "random":
            generator = torch.Generator().manual_seed(seed)
            context = torch.randn(self.n_ctx, width, generator=generator) * RANDOM_INIT_STD
            return context.to(device=device, dtype=dtype)
        if not isinstance(init, str) or not init.strip():
            raise ValueError(f"init must be 'random' or a phrase, got {init!r}")
        tokens = backbone.tokenize([init])[0].to(device)
        n_tokens = int(tokens.argmax().item()) - 1   # between start-of-text and end-of-text
        if n_tokens != self.n_ctx:
            raise ValueError(f"init phrase {init!r} is {n_tokens} tokens long, but n_ctx is {self.n_ctx}; "
                             f"choose a phrase of {self.n_ctx} tokens or set n_ctx={n_tokens}")
        with torch.no_grad():
            return backbone.token_embeddings(tokens[1:1 + self.n_ctx]).detach().clone().to(dtype)

    def embeddings(self) -> torch.Tensor:
        """Prompt token embeddings [C, L, W]: start-of-text, the shared context, the class words.

        The fixed rows come from the backbone's token table at call time (a gather of C x L rows), not
        from a copy taken at construction: a copy would go stale when the table is loaded or trained.
        """
        fixed = self.backbone.token_embeddings(self.tokens)                # [C, L, W]
        context = self.ctx.unsqueeze(0).expand(fixed.shape[0], -1, -1).to(fixed.dtype)
        return torch.cat([fixed[:, :1], context, fixed[:, 1 + self.n_ctx:]], dim=1)

    def forward(self, normalize: bool = True) -> torch.Tensor:
        """Text features [C, D] of the class prompts (row order = ``class_words``)."""
        return self.backbone.encode_text_embeddings(self.embeddings(), self.tokens, normalize=normalize)

    def extra_repr(self) -> str:
        return f"n_ctx={self.n_ctx}, init={self.init!r}, classes={self.class_words}"
