"""Images through the text student (the paper's stage-4 design): visual tokens take the place of placeholder
tokens in the student's input, and the student's own encoder, mean pooling and heads give the image vector.

    image -> encoder grid (B, T, C) -> average-pooled to N tokens -> Linear(C -> hidden) ->
    [CLS] + N visual tokens (+ label tokens) + [SEP] as input embeddings -> student encoder -> mean pooling -> heads

Label tokens (optional, classifier encoders only): the names of the encoder's top-k ImageNet classes, as the
student's own word embeddings, between the visual tokens and [SEP]. Only the projection trains: the image encoder
and the whole student stay frozen (and are never handed to the optimizer).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from jasper.errors import JasperError
from jasper.models.student import Student, mean_pool


def pool_tokens(grid: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """(B, T, C) encoder tokens -> (B, n_tokens, C), average-pooled along the token order."""
    return F.adaptive_avg_pool1d(grid.transpose(1, 2), n_tokens).transpose(1, 2)


class ImageTower(nn.Module):
    """The trained part of the image side: pooled encoder tokens -> the student's input width.

    A linear projection, plus (with `mlp_hidden` > 0) a residual two-layer MLP whose output layer starts at
    zero, so that training starts from the linear (closed-form) projection exactly.
    """

    def __init__(self, width: int, hidden: int, n_tokens: int, mlp_hidden: int = 0) -> None:
        super().__init__()
        self.n_tokens = n_tokens
        self.projection = nn.Linear(width, hidden)
        self.mlp: nn.Sequential | None = None
        if mlp_hidden:
            out = nn.Linear(mlp_hidden, hidden)
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
            self.mlp = nn.Sequential(nn.Linear(width, mlp_hidden), nn.GELU(), out)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, n_tokens, width) pooled encoder tokens -> (B, n_tokens, hidden) visual tokens."""
        out = self.projection(pooled)
        return out if self.mlp is None else out + self.mlp(pooled)


class LabelTokens:
    """Token ids of "name, name, name" for each image's top-k classes, ending in the student's [SEP]."""

    def __init__(self, tokenizer: Any, class_names: list[str], top_k: int, max_name_tokens: int = 6) -> None:
        self.top_k = top_k
        self.last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.last
        names = tokenizer(class_names, add_special_tokens=False)["input_ids"] if top_k and class_names else []
        self.names = [ids[:max_name_tokens] for ids in names]
        self.comma = tokenizer(",", add_special_tokens=False)["input_ids"]

    def ids(self, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, k) class indices, most likely first -> (ids (B, L), mask (B, L)), padded, [SEP] after each."""
        rows = []
        for row in classes[:, : self.top_k].tolist() if self.top_k else [[] for _ in range(len(classes))]:
            ids: list[int] = []
            for n, c in enumerate(row):
                ids += (self.comma if n else []) + self.names[c]
            rows.append([*ids, self.last])
        width = max(len(r) for r in rows)
        padded = torch.tensor([r + [self.pad] * (width - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
        return padded, mask


class ImageStudent(nn.Module):
    """A frozen text student with an image tower spliced into its input."""

    def __init__(self, student: Student, tower: ImageTower, labels: LabelTokens | None = None) -> None:
        super().__init__()
        self.student = student
        self.tower = tower
        self.labels = labels or LabelTokens(student.tokenizer, [], 0)
        student.requires_grad_(False)

    def input_embeddings(
        self, visual: torch.Tensor, classes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs_embeds (B, 1 + N + L, hidden), attention_mask): [CLS] visual tokens [label tokens] [SEP] [pad].

        The placeholders' neighbours are the tokenizer's own special tokens' embeddings, so the encoder sees an
        input shaped like a text's; `classes` (B, k) are the image's top classes for the label tokens.
        """
        tokenizer = self.student.tokenizer
        first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        batch, n, _ = visual.shape
        if classes is None:
            classes = torch.zeros(batch, 0, dtype=torch.long)
        tail, tail_mask = self.labels.ids(classes)
        embed = self.student.backbone.get_input_embeddings()
        head = embed(torch.tensor([first], device=visual.device)).to(visual.dtype).expand(batch, 1, -1)
        tail_embeds = embed(tail.to(visual.device)).to(visual.dtype)
        embeds = torch.cat([head, visual, tail_embeds], dim=1)
        mask = torch.cat([torch.ones(batch, n + 1, dtype=torch.long), tail_mask], dim=1).to(visual.device)
        return embeds, mask

    def pooled(self, features: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Mean-pooled student encoder output. (B, N, width) pooled encoder tokens -> (B, hidden)"""
        embeds, mask = self.input_embeddings(self.tower(features), classes)
        extra = {}
        if "token_type_ids" in self.student.tokenizer.model_input_names:
            extra["token_type_ids"] = torch.zeros_like(mask)
        output = self.student.backbone(inputs_embeds=embeds, attention_mask=mask, **extra)
        return mean_pool(output.last_hidden_state, mask)

    def forward(
        self, features: torch.Tensor, dims: list[int], classes: torch.Tensor | None = None
    ) -> dict[int, torch.Tensor]:
        """Head outputs for images, as the student gives them for texts. {dim: (B, dim)}"""
        return self.student.project(self.pooled(features, classes), dims)


class SentenceTransformerSide(nn.Module):
    """An exported sentence-transformers model (Transformer, mean Pooling, Dense, Normalize) as the text side
    of the image path: the same encoder and head as its texts get."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        modules = list(model)
        pooling = modules[1] if len(modules) > 1 else None
        mode = getattr(pooling, "pooling_mode", None) or getattr(pooling, "get_pooling_mode_str", lambda: None)()
        if mode != "mean" and getattr(pooling, "pooling_mode_mean_tokens", False) is not True:
            raise JasperError("the image path needs a model with mean pooling after its Transformer (a jasper export)")
        self.model = model
        self.tokenizer = model.tokenizer
        self.backbone = modules[0].auto_model
        self.hidden_size = int(self.backbone.config.hidden_size)
        method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.head_dims = [int(method())]

    def project(self, pooled: torch.Tensor, dims: list[int]) -> dict[int, torch.Tensor]:
        """The model's modules after pooling (its head), on mean-pooled encoder outputs. {dim: (B, dim)}"""
        if any(d != self.head_dims[0] for d in dims):
            raise JasperError(f"this model gives {self.head_dims[0]}-d vectors, not {dims}")
        features = {"sentence_embedding": pooled}
        for module in list(self.model)[2:]:
            features = module(features)
        return {self.head_dims[0]: features["sentence_embedding"]}
