"""Config sections of the model: the student (encoder, heads, prompts, lengths) and the losses."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jasper.config.base import Strict


class StudentConfig(Strict):
    """The student encoder and its heads; the first head (FC1) maps to the teacher space."""

    model: str
    trust_remote_code: bool = False
    keep_layers: list[int] | None = None
    max_length: int = Field(default=128, gt=0)  # the training cut: tokens of a text the student learns from
    # how long the exported and served student reads (its exports' max_seq_length, and what evaluation scores);
    # None: the base model's own limit (256 for all-MiniLM-L6-v2), never the training cut
    max_seq_length: int | None = Field(default=None, gt=0)
    # the student's own prompts by role, written into its exports so that sentence-transformers' encode_query /
    # encode_document (and prompt_name=) apply them; a corpus row is read with its role's prompt in training too
    prompts: dict[Literal["query", "document"], str] = {}
    # the prompt of plain text (role text, and `encode()` without a prompt name): a key of `prompts`, or None
    default_prompt_name: Literal["query", "document"] | None = None
    heads: list[int] = Field(min_length=1)
    head_mode: Literal["independent", "prefix"] = "independent"
    head_init: Literal["random", "ridge"] = "random"  # ridge: closed-form fit on frozen features
    gradient_checkpointing: bool = False  # recompute encoder activations in backward: less memory, more time
    # training forward: sort each batch by token length and pad it in this many groups (same vectors and
    # gradients, far fewer padded tokens when lengths vary); 1 pads the whole batch to its longest text
    length_groups: int = Field(default=4, ge=1)
    ridge_alpha: float = Field(default=0.1, gt=0)

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
    similarity: float = Field(default=200.0, ge=0)
    resim: float = Field(default=20.0, ge=0)
    margin: float = Field(default=0.015, ge=0)  # negative would switch the ranking loss off
    resim_impl: Literal["fast", "reference"] = "fast"  # same value and gradient; reference is P x P
    # what the short heads learn from: the teachers' vectors, or the student's own detached FC1 vectors (the
    # paper's proposed, untested self-distillation variant of stage 3)
    short_head_target: Literal["teacher", "self"] = "teacher"
