"""Config sections of the model: the student (encoder, heads, prompts, lengths) and the losses."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jasper.config.base import Strict


class StudentConfig(Strict):
    """The student encoder and its heads; the first head (FC1) maps to the teacher space."""

    model: str
    """The student's encoder: a hub id or folder of any Hugging Face encoder, or a sentence-transformers folder
    (its Transformer module is used)."""
    trust_remote_code: bool = False
    """Let a hub model run its own code."""
    keep_layers: list[int] | None = None
    """Keep only these encoder layers, in this order (e.g. `[0, 3, 5]` of all-MiniLM-L6-v2's six); unset, all."""
    max_length: int = Field(default=128, gt=0)
    """The training cut: how many tokens of a text the student learns from."""
    max_seq_length: int | None = Field(default=None, gt=0)
    """How many tokens the exported and served student reads (its exports' `max_seq_length`, and what evaluation
    scores); unset, the base model's own limit (256 for all-MiniLM-L6-v2), never the training cut."""
    prompts: dict[Literal["query", "document"], str] = {}
    """The student's own prompts by role, e.g. `{document: "passage: "}`: a corpus row is read with its role's prompt
    in training, and the exports carry them, so that sentence-transformers' `encode_query` / `encode_document`
    (and `prompt_name=`), `jasper encode --prompt-name` and the server's `input_type` apply them."""
    default_prompt_name: Literal["query", "document"] | None = None
    """The prompt of plain text (role `text`, and `encode()` without a prompt name): a key of `prompts`, or unset
    for none."""
    heads: list[int] = Field(min_length=1)
    """Output dims, FC1 first: FC1 maps to the concatenated teacher space (its dim is the sum of the teachers'), the
    others are the short heads (e.g. `[768, 256, 128, 64]`)."""
    head_mode: Literal["independent", "prefix"] = "independent"
    """`independent`: each short head its own Linear layer (the paper); `prefix`: a short head is the first dims of
    FC1 (Matryoshka-style)."""
    head_init: Literal["random", "ridge"] = "random"
    """`ridge`: every head starts at the closed-form ridge fit of the frozen encoder's features to the teacher
    vectors (short heads: its principal directions), where a head-only stage would converge."""
    gradient_checkpointing: bool = False
    """Recompute the encoder's activations in the backward pass: less memory, more time."""
    length_groups: int = Field(default=4, ge=1)
    """Training forward: sort each batch by token length and pad it in this many groups (the same vectors and
    gradients, far fewer padded tokens when lengths vary); 1 pads the whole batch to its longest text."""
    ridge_alpha: float = Field(default=0.1, gt=0)
    """The ridge start's penalty, relative to the mean feature variance."""

    @model_validator(mode="after")
    def _check_heads(self) -> StudentConfig:
        if len(set(self.heads)) != len(self.heads) or any(d <= 0 for d in self.heads):
            raise ValueError(f"student.heads must be distinct positive dims, got {self.heads}")
        if self.head_mode == "prefix" and any(d > self.heads[0] for d in self.heads[1:]):
            raise ValueError("with head_mode=prefix every short head must be <= the FC1 dim")
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ValueError(
                f"student.default_prompt_name '{self.default_prompt_name}' is not a key of student.prompts "
                f"({sorted(self.prompts)})"
            )
        return self


class LossConfig(Strict):
    """Weights of the three losses and the ranking margin."""

    cosine: float = Field(default=10.0, ge=0)
    """Weight of the cosine loss (1 - cos between the student's FC1 vector and the teacher vector)."""
    similarity: float = Field(default=200.0, ge=0)
    """Weight of the similarity-matrix loss (MSE between the in-batch similarity matrices)."""
    resim: float = Field(default=20.0, ge=0)
    """Weight of the relative-similarity ranking loss (pairs of in-batch pairs ranked as the teachers rank them)."""
    margin: float = Field(default=0.015, ge=0)
    """The ranking loss's margin."""
    resim_impl: Literal["fast", "reference"] = "fast"
    """The ranking loss's implementation: `fast` (sorted, O(P log P)) or `reference` (the paper's P x P matrix);
    the same value and gradient."""
    short_head_target: Literal["teacher", "self"] = "teacher"
    """What the short heads learn from: the teachers' vectors, or the student's own detached FC1 vectors (the paper's
    proposed self-distillation of stage 3)."""
