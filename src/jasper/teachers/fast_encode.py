"""Fast encoding for sentence-transformers teachers: tokenise once ahead, sort by token length into batches
that carry almost no padding, keep the batches flowing from a producer thread, run the encoder in half
precision on GPU, and restore the original order at the end.

`SentenceTransformer.encode` sorts by character length, tokenises and pads each batch in the main thread,
and synchronises with the device after every batch; on a GPU those gaps, not the matmuls, set the pace.
The modules after the encoder (pooling, dense, normalise) run in float32 on the encoder's outputs, as
they are cheap and pooling many tokens in half precision would cost accuracy.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from jasper.teachers import cpu_fusion

logger = logging.getLogger(__name__)

TOKENIZE_CHUNK = 1024  # texts per tokenizer call; chunks go to the tokenizer threads
PREFETCH = 4  # padded batches waiting for the device
LENGTH_SPREAD = 2.0  # embedding: a batch holds no text shorter than half its longest (`sorted_batches`' spread)


def sorted_batches(
    lengths: np.ndarray, batch_size: int, max_tokens: int | None = None, spread: float | None = None
) -> list[np.ndarray]:
    """Row indices grouped into batches of similar length, longest first (so memory errors show at once).

    A batch holds at most `batch_size` rows and, when `max_tokens` is set, at most that many padded tokens
    (always at least one row); with `spread`, no row shorter than its batch's longest / `spread` (a short query
    is not padded to a long document's length because they arrived together).
    """
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        size = batch_size if max_tokens is None else max(1, min(batch_size, max_tokens // max(longest, 1)))
        stop = min(start + size, len(order))
        if spread is not None:
            short = np.flatnonzero(lengths[order[start + 1 : stop]] * spread < longest)
            stop = start + 1 + int(short[0]) if len(short) else stop
        batches.append(order[start:stop])
        start = stop
    return batches


def pad(ids: Sequence[Sequence[int] | np.ndarray], pad_id: int, left: bool) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) int64 arrays, padded on the tokenizer's side to the longest row."""
    width = max(len(row) for row in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        input_ids[i, span] = row
        mask[i, span] = 1
    return input_ids, mask


def resolve_dtype(name: str, device: torch.device, checkpoint_dtype: torch.dtype | None) -> torch.dtype:
    """'auto': float32 on CPU; on GPU the checkpoint's own half type, else float16 (more mantissa than bf16)."""
    if name != "auto":
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    if device.type != "cuda":
        return torch.float32
    return checkpoint_dtype if checkpoint_dtype in (torch.float16, torch.bfloat16) else torch.float16


class FastSentenceEncoder:
    """Encodes texts with a loaded `SentenceTransformer` whose first module is a text `Transformer`."""

    def __init__(
        self,
        model: Any,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 64,
        max_tokens: int | None = None,
        workers: int = 1,
    ) -> None:
        self.model = model.eval()
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.tokenizers = [model.tokenizer] + [copy.deepcopy(model.tokenizer) for _ in range(max(0, workers - 1))]
        self.left = getattr(model.tokenizer, "padding_side", "right") == "left"
        self.pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
        self.max_length = model.max_seq_length
        self.extra: dict[str, Any] | None = None  # non-id tensors the module expects (set on the first batch)
        self.extra_other: dict[str, Any] = {}  # non-tensor entries of `preprocess` (e.g. the modality)
        self.use_own_padding = True
        self.cut_rows = 0  # texts that reached max_length tokens: cut by truncation
        # float32 on CPU: packed oneDNN matmuls with the GELU fused, checked on the first batch
        self.fusion_pending = device.type == "cpu" and dtype == torch.float32 and cpu_fusion.available()
        if dtype != torch.float32:
            model[0].to(dtype)

    @staticmethod
    def supports(model: Any) -> bool:
        """Whether the model is a text encoder this path can drive (else use `SentenceTransformer.encode`)."""
        tokenizer = getattr(model, "tokenizer", None)
        return bool(getattr(tokenizer, "is_fast", False)) and hasattr(model[0], "preprocess")

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        chunks = [texts[i : i + TOKENIZE_CHUNK] for i in range(0, len(texts), TOKENIZE_CHUNK)]

        def run(job: tuple[int, list[str]]) -> list[list[int]]:
            k, chunk = job
            # one copy per thread: a fast tokenizer's truncation state is not reentrant
            tokenizer = self.tokenizers[k % len(self.tokenizers)]
            out = tokenizer(chunk, truncation=True, max_length=self.max_length, return_attention_mask=False)
            return list(out["input_ids"])

        if len(self.tokenizers) > 1 and len(chunks) > 1:
            with ThreadPoolExecutor(len(self.tokenizers)) as pool:
                parts = list(pool.map(run, enumerate(chunks)))
        else:
            parts = [run((0, chunk)) for chunk in chunks]
        return [row for part in parts for row in part]

    def _check_first_batch(self, texts: list[str], ids: list[list[int]]) -> None:
        """Compare own padding with the module's `preprocess`; on any difference use `preprocess` throughout."""
        reference = self.model.preprocess(texts)
        input_ids, mask = pad(ids, self.pad_id, self.left)
        same = (
            torch.equal(reference["input_ids"], torch.from_numpy(input_ids))
            and torch.equal(reference["attention_mask"], torch.from_numpy(mask))
            and all(
                not isinstance(v, torch.Tensor) or k in ("input_ids", "attention_mask") or not v.any()
                for k, v in reference.items()
            )
        )
        if not same:
            logger.info("teacher tokenisation differs from a plain tokenizer call: using the model's preprocess")
            self.use_own_padding = False
        ids_keys = ("input_ids", "attention_mask")
        self.extra = {k: v for k, v in reference.items() if k not in ids_keys and isinstance(v, torch.Tensor)}
        self.extra_other = {k: v for k, v in reference.items() if not isinstance(v, torch.Tensor)}

    def _features(self, texts: list[str], ids: list[list[int]]) -> dict[str, Any]:
        if not self.use_own_padding:
            return dict(self.model.preprocess(texts))
        input_ids, mask = pad(ids, self.pad_id, self.left)
        features: dict[str, Any] = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        for name in self.extra or {}:
            features[name] = torch.zeros_like(features["input_ids"])  # token_type_ids: one segment
        features.update(self.extra_other)
        if self.device.type == "cuda":
            features = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        return features

    def _produce(self, texts: list[str], ids: list[list[int]], batches: list[np.ndarray]) -> Iterator[dict[str, Any]]:
        """Padded batches from a background thread, a few ahead of the device."""
        slots: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH)
        stop = threading.Event()

        def work() -> None:
            try:
                for batch in batches:
                    if stop.is_set():
                        return
                    slots.put(self._features([texts[i] for i in batch], [ids[i] for i in batch]))
                slots.put(None)
            except BaseException as error:  # surfaces in the consumer
                slots.put(error)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            while (item := slots.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    slots.get_nowait()
                except queue.Empty:
                    thread.join(0.01)

    @torch.inference_mode()
    def encode(self, texts: list[str], on_rows: Callable[[int], object] | None = None) -> np.ndarray:
        """Vectors for `texts` in their original order, float32 (n, dim); `on_rows(n)` after each batch."""
        if not texts:
            return np.zeros((0, 0), np.float32)
        ids = self._tokenize(texts)
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        self.cut_rows += int((lengths >= self.max_length).sum()) if self.max_length else 0
        batches = sorted_batches(lengths, self.batch_size, self.max_tokens)
        if self.extra is None:
            self._check_first_batch([texts[i] for i in batches[0]], [ids[i] for i in batches[0]])
        outputs: list[torch.Tensor] = []
        for features, batch in zip(self._produce(texts, ids, batches), batches, strict=False):
            moved = {k: _to(v, self.device) for k, v in features.items()}
            if self.fusion_pending:
                self._try_fusion(moved)
            outputs.append(self._forward(moved))  # stays on the device: no sync per batch
            if on_rows is not None:
                on_rows(len(batch))  # counts batches handed to the device; on a CPU they are done
        vectors = torch.cat(outputs).float().cpu().numpy()
        result = np.empty_like(vectors)
        result[np.concatenate(batches)] = vectors
        return result

    def _try_fusion(self, features: dict[str, Any]) -> None:
        """Fuse the encoder's matmuls for the CPU, keeping the fusion only if this batch comes out the same."""
        self.fusion_pending = False
        reference = self._forward(features)
        undo = cpu_fusion.fuse_linears(self.model[0])
        try:
            fused = self._forward(features)
            same = torch.allclose(fused, reference, rtol=1e-4, atol=1e-5)
        except RuntimeError as error:  # an op this build or layout does not support
            logger.info("CPU fusion unavailable (%s): plain float32 matmuls", error)
            same = False
        if not same:
            cpu_fusion.unfuse(undo)
        elif undo:
            packed = [m for m in self.model[0].modules() if isinstance(m, cpu_fusion.PackedLinear)]
            with_gelu = sum(m.post == "gelu" for m in packed)
            logger.info("teacher encoder on CPU: %d packed matmuls, %d with GELU fused", len(packed), with_gelu)

    def _forward(self, features: dict[str, Any]) -> torch.Tensor:
        out = self.model[0](features)
        if self.dtype != torch.float32:
            out = {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in out.items()}
        for module in list(self.model)[1:]:
            out = module(out)
        return out["sentence_embedding"]


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
