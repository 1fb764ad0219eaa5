"""The student: backbone -> mean pooling -> heads (FC1 to the teacher space, short heads)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from jasper.config import StudentConfig
from jasper.errors import JasperError
from jasper.models.backbone import load_backbone, native_max_length
from jasper.progress import progress_bar
from jasper.prompts import role_prompt
from jasper.runtime import quiet_transformers
from jasper.teachers.fast_encode import LENGTH_SPREAD, pad, sorted_batches


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of token vectors over the attention mask. (B, L, H), (B, L) -> (B, H)"""
    weights = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * weights).sum(dim=1)
    return summed / weights.sum(dim=1).clamp(min=1.0)


class Student(nn.Module):
    """A text encoder with mean pooling and one linear head per output dim."""

    backbone: Any  # a transformers PreTrainedModel

    def __init__(
        self,
        backbone: Any,
        tokenizer: Any,
        heads: list[int],
        head_mode: str = "independent",
        max_length: int = 128,
        length_groups: int = 1,
        max_seq_length: int | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.head_dims = list(heads)
        self.head_mode = head_mode
        self.max_length = max_length  # the training cut (token_ids)
        self.max_seq_length = max_seq_length or max_length  # how long it reads when it embeds (encode, exports)
        self.prompts = dict(prompts or {})  # by role: query, document
        self.default_prompt_name = default_prompt_name  # the prompt of plain text (and of a role without its own)
        self.length_groups = length_groups  # training forward: pad each batch in this many length groups
        hidden = backbone.config.hidden_size
        own = heads if head_mode == "independent" else heads[:1]
        self.heads = nn.ModuleDict({str(d): nn.Linear(hidden, d) for d in own})

    @property
    def hidden_size(self) -> int:
        """Width of the pooled backbone output."""
        return int(self.backbone.config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.parameters()).device

    def prompt_for(self, role: str) -> str:
        """The prompt the student reads a text of `role` with: its own, else the default prompt, else none."""
        return role_prompt(self.prompts, self.default_prompt_name, role)

    def inputs(self, texts: list[str], roles: list[str] | str = "text") -> list[str]:
        """What the student reads: each text behind its role's prompt (`roles`: one per text, or one for all)."""
        each = [roles] * len(texts) if isinstance(roles, str) else roles
        return [self.prompt_for(role) + text for text, role in zip(texts, each, strict=True)]

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenize (cut at `max_length`, default max_seq_length) and move to the student's device."""
        length = max_length or self.max_seq_length
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=length, return_tensors="pt")
        return {
            k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")
        }

    def pooled(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean-pooled backbone output. (B, H)"""
        output = self.backbone(**batch)
        return mean_pool(output.last_hidden_state, batch["attention_mask"])

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text for training (special tokens in, cut at the training max_length), unpadded."""
        out = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, return_attention_mask=False, verbose=False
        )
        return cast(list[list[int]], out["input_ids"])

    def collate(self, ids: Sequence[Sequence[int] | np.ndarray]) -> dict[str, torch.Tensor]:
        """The padded batch `tokenize` gives, built from token ids (tokenised once, ahead of training)."""
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids, mask = pad(ids, pad_id, getattr(self.tokenizer, "padding_side", "right") == "left")
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if "token_type_ids" in self.tokenizer.model_input_names:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])  # one segment, as for a single text
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def pooled_ids(self, ids: Sequence[Sequence[int] | np.ndarray]) -> torch.Tensor:
        """Mean-pooled outputs of token-id rows, in order. (B, H)

        With `length_groups` > 1 the batch is sorted by token length and run through the encoder in that many
        groups, each padded only to its own longest text: the same vectors and gradients (every text is
        encoded on its own; padding is masked) for far fewer padded tokens when lengths vary.
        """
        groups = min(self.length_groups, len(ids) // 8)  # groups of fewer than 8 texts cost more than they save
        if groups <= 1:
            return self.pooled(self.collate(ids))
        order = np.argsort([len(row) for row in ids], kind="stable")
        parts = [self.pooled(self.collate([ids[i] for i in group])) for group in np.array_split(order, groups)]
        inverse = torch.from_numpy(np.argsort(order)).to(self.device)
        return torch.cat(parts)[inverse]

    def head_weight(self, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (dim, H), bias (dim,)) of the head for `dim` (a slice of FC1 in prefix mode)."""
        if str(dim) in self.heads:
            layer = self.head(dim)
            return layer.weight, layer.bias
        fc1 = self.head(self.head_dims[0])
        return fc1.weight[:dim], fc1.bias[:dim]

    def head(self, dim: int) -> nn.Linear:
        """The Linear layer that owns head `dim`."""
        return cast(nn.Linear, self.heads[str(dim)])

    def project(self, pooled: torch.Tensor, dims: list[int], detach: Sequence[int] = ()) -> dict[int, torch.Tensor]:
        """Head outputs (not normalised) for each dim in `dims`; the heads in `detach` see the pooled output
        without its graph (their losses train the head alone). (B, H) -> {dim: (B, dim)}"""
        out = {}
        for dim in dims:
            weight, bias = self.head_weight(dim)
            features = pooled.detach() if dim in detach else pooled
            out[dim] = nn.functional.linear(features.to(weight.dtype), weight, bias)
        return out

    def forward(
        self,
        texts: list[str] | None,
        dims: list[int],
        pooled: torch.Tensor | None = None,
        ids: Sequence[Sequence[int] | np.ndarray] | None = None,
        detach: Sequence[int] = (),
    ) -> dict[int, torch.Tensor]:
        """Head outputs for `texts`, for their token ids, or for already pooled encoder outputs (`detach`: as in
        `project`). {dim: (B, dim)}"""
        if pooled is None:
            if ids is None:
                assert texts is not None
                ids = self.token_ids(texts)
            pooled = self.pooled_ids(ids)
        return self.project(pooled, dims, detach)

    @torch.no_grad()
    def encode(
        self,
        texts: list[str],
        dims: list[int | None],
        batch_size: int = 64,
        progress: bool = False,
        normalize: bool = True,
        role: str | None = None,
        max_length: int | None = None,
    ) -> dict[int | None, np.ndarray]:
        """Vectors per dim (None = the pooled backbone output, no head), L2-normalised by default. `role` puts its
        prompt before each text (None: the texts are read as given); `max_length` defaults to max_seq_length."""
        was_training = self.training
        self.eval()
        if role is not None:
            texts = self.inputs(texts, role)
        # length-sorted batches, none mixing texts of very different lengths: little padding (characters stand in
        # for tokens here)
        batches = sorted_batches(np.array([len(t) for t in texts]), batch_size, spread=LENGTH_SPREAD)
        order = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        chunks: dict[int | None, list[torch.Tensor]] = {d: [] for d in dims}
        bar = progress_bar(len(texts), "encode", "text", disable=not progress)
        for rows in batches:
            batch = [texts[i] for i in rows]
            bar.update(len(batch))
            pooled = self.pooled(self.tokenize(batch, max_length))
            heads = self.project(pooled, [d for d in dims if d is not None])
            for dim in dims:
                vectors = pooled if dim is None else heads[dim]
                vectors = vectors.float()
                chunks[dim].append((nn.functional.normalize(vectors, dim=-1) if normalize else vectors).cpu())
        bar.close()
        self.train(was_training)
        inverse = np.argsort(order)
        return {d: torch.cat(c).numpy()[inverse] if c else np.zeros((0, 0), np.float32) for d, c in chunks.items()}


PROBE = ["a probe sentence for the packed matmuls", "two"]


def pack_for_inference(student: Student) -> Student:
    """On a CPU in float32, run the encoder's Linear layers as oneDNN matmuls on weights packed once, with BERT's
    exact GELU fused into the feed-forward matmul: the same float32 vectors (checked on a probe, else undone),
    ~1.5x faster to embed long texts. For a student that only embeds from here on (evaluation, serving, encoding):
    its packed layers do not train."""
    from jasper.teachers import cpu_fusion

    if student.device.type != "cpu" or student.training or not cpu_fusion.available():
        return student
    if any(p.dtype != torch.float32 for p in student.backbone.parameters()):
        return student
    with torch.no_grad():
        reference = student.pooled(student.tokenize(PROBE))
        undo = cpu_fusion.fuse_linears(student.backbone)
        try:
            same = torch.allclose(student.pooled(student.tokenize(PROBE)), reference, rtol=1e-4, atol=1e-5)
        except RuntimeError:  # an op this build or layout does not support
            same = False
    if not same:
        cpu_fusion.unfuse(undo)
    return student


def _enable_checkpointing(backbone: Any) -> None:
    """Activation checkpointing, non-reentrant (frozen embeddings give inputs without grad)."""
    kwargs = {"use_reentrant": False}
    if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5
        backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def build_student(config: StudentConfig) -> Student:
    """A fresh student: the backbone from `config.model` (optionally cut) and new heads."""
    backbone, tokenizer = load_backbone(config.model, config.keep_layers, config.trust_remote_code)
    if config.gradient_checkpointing:
        _enable_checkpointing(backbone)
    reads = config.max_seq_length or native_max_length(config.model, tokenizer, backbone.config)
    return Student(backbone, tokenizer, config.heads, config.head_mode, config.max_length, config.length_groups,
                   reads, {str(k): v for k, v in config.prompts.items()}, config.default_prompt_name)  # fmt: skip


def save_student(student: Student, folder: Path) -> None:
    """Save backbone + tokenizer (HF format) and the heads, so `load_student` needs nothing else."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        student.backbone.save_pretrained(folder / "backbone")
    student.tokenizer.save_pretrained(folder / "backbone")
    heads = {name: p.detach().cpu().contiguous() for name, p in student.heads.state_dict().items()}
    save_file(heads, str(folder / "heads.safetensors"))
    meta = {
        "heads": student.head_dims,
        "head_mode": student.head_mode,
        "max_length": student.max_length,
        "max_seq_length": student.max_seq_length,
        "prompts": student.prompts,
        "default_prompt_name": student.default_prompt_name,
    }
    (folder / "student.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def load_student(folder: Path, inference: bool = False) -> Student:
    """Load a student saved by `save_student`; `inference=True` for one that only embeds (`pack_for_inference`)."""
    folder = Path(folder)
    meta_path = folder / "student.json"
    if not meta_path.is_file():
        raise JasperError(f"'{folder}' is not a saved jasper student (no student.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        backbone, tokenizer = load_backbone(str(folder / "backbone"))
        student = Student(backbone, tokenizer, meta["heads"], meta["head_mode"], meta["max_length"], 1,
                          meta.get("max_seq_length"), meta.get("prompts"), meta.get("default_prompt_name"))  # fmt: skip
        student.heads.load_state_dict(load_file(str(folder / "heads.safetensors")))
    except JasperError:
        raise
    except Exception as error:  # a damaged folder fails in many library-specific ways
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise JasperError(
            f"the saved student '{folder}' cannot be loaded ({type(error).__name__}: {first}): it is damaged; "
            "train it again (`jasper train CONFIG --restart`)"
        ) from None
    return pack_for_inference(student.eval()) if inference else student
