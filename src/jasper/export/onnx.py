"""ONNX (and dynamically quantized int8) copies of an exported head's encoder, and an ONNX Runtime embedder.

The files follow sentence-transformers' ONNX layout: `onnx/model.onnx` maps `input_ids`, `attention_mask` (and
`token_type_ids`) to `last_hidden_state`, and the folder's own Pooling, Dense and Normalize modules do the
rest, so `SentenceTransformer(folder, backend="onnx")` reads it where sentence-transformers' ONNX extra
(`optimum`) is installed. sentence-transformers' own export helpers need `optimum`, whose releases pin
transformers < 4.58; jasper runs on transformers 5, so the graph is exported with `torch.onnx` (its
`torch.export`-based exporter) and quantized
with ONNX Runtime's `quantize_dynamic` (the call `optimum`'s quantizer makes), and jasper reads it with
ONNX Runtime directly (`OnnxEmbedder`) for serving and benchmarks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jasper.errors import JasperError
from jasper.eval.metrics import normalize_rows

logger = logging.getLogger(__name__)
FP32_FILE = "onnx/model.onnx"
INT8_FILE = "onnx/model_qint8_avx512_vnni.onnx"  # sentence-transformers' name for this quantization
PARITY_ATOL = 1e-4  # ONNX fp32 vs torch, on the token vectors


def _needs_onnx() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise JasperError("ONNX export and serving need the onnx extra: pip install 'jasper-distill[onnx]'") from None
    return onnxruntime


def export_onnx(folder: Path, quantize: str | None = None) -> list[Path]:
    """Write `folder/onnx/model.onnx` (checked against torch) and, with quantize='int8', its int8 copy."""
    from transformers import AutoModel, AutoTokenizer

    ort = _needs_onnx()
    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    names: list[str] = [
        n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names
    ]
    sample = tokenizer(["a short text", "a somewhat longer text for the second row"], padding=True, return_tensors="pt")
    target = folder / FP32_FILE
    target.parent.mkdir(exist_ok=True)
    batch, sequence = (
        torch.export.Dim("batch"),
        torch.export.Dim("sequence", min=2, max=_positions(model)),
    )
    with torch.no_grad():  # torch.export (the exporter transformers 5 models are written for), one file
        torch.onnx.export(
            _Encoder(model).eval(),
            tuple(sample[n] for n in names),
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
            dynamo=True,
            external_data=False,
        )
    _check_parity(model, tokenizer, names, target, ort)
    written = [target]
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = folder / INT8_FILE
        logging.disable(logging.INFO)  # the quantizer logs a line per tensor on the root logger
        try:
            quantize_dynamic(str(target), str(quantized), weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        written.append(quantized)
    elif quantize is not None:
        raise JasperError(f"--quantize {quantize}: only int8 is supported")
    return written


def _positions(model: Any) -> int:
    """The longest sequence the model takes (its position table), for the exported sequence axis."""
    return int(getattr(model.config, "max_position_embeddings", 0) or 512)


class _Encoder(torch.nn.Module):
    """The HF model as positional inputs -> last_hidden_state: the signature the exported graph has."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token vectors. (B, L, H)"""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state


def _check_parity(model: Any, tokenizer: Any, names: list[str], path: Path, ort: Any) -> None:
    """The exported graph gives torch's token vectors on a batch of another shape than the traced one."""
    texts = ["one", "three words here", "a longer sentence, to check that the sequence axis is dynamic"] * 2
    batch = tokenizer(texts, padding=True, return_tensors="np")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = session.run(["last_hidden_state"], {n: batch[n].astype(np.int64) for n in names})[0]
    with torch.no_grad():
        expected = model(**{n: torch.from_numpy(batch[n]) for n in names}).last_hidden_state.numpy()
    mask = batch["attention_mask"].astype(bool)
    diff = float(np.abs(found - expected)[mask].max())
    if diff > PARITY_ATOL:
        raise JasperError(f"the ONNX export of '{path.parent.parent}' differs from torch by {diff:.2e}: not kept")
    logger.info("ONNX export %s: max |diff| to torch %.1e", path, diff)


class OnnxEmbedder:
    """One exported head run by ONNX Runtime: the ONNX encoder, then the folder's mean pooling, Dense and
    normalisation in numpy (what sentence-transformers' ONNX backend does). `jasper serve` wraps it in a
    `FolderEmbedder`."""

    def __init__(self, folder: Path, file: str = FP32_FILE) -> None:
        from safetensors.numpy import load_file
        from transformers import AutoTokenizer

        ort = _needs_onnx()
        folder = Path(folder)
        if not (folder / file).is_file():
            raise JasperError(f"'{folder / file}' does not exist: run `jasper export RUN --format onnx` first")
        options = ort.SessionOptions()
        # no busy-waiting between runs: the tokenizer runs there, on the same cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(folder / file), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        # sentence-transformers < 6 kept it in sentence_bert_config.json; 6.x in the tokenizer's config
        self.max_length = int(config.get("max_seq_length") or min(self.tokenizer.model_max_length, 100_000))
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        dense = next(m["path"] for m in modules if m["type"].endswith("Dense"))
        weights = load_file(str(folder / dense / "model.safetensors"))
        self.weight, self.bias = weights["linear.weight"], weights.get("linear.bias")
        self.dims = [int(self.weight.shape[0])]

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised vectors of `texts`, in order. (N, dim)"""
        order = np.argsort([-len(t) for t in texts])
        out = np.zeros((len(texts), self.dims[0]), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
            )
            hidden = self.session.run(None, {n: batch[n].astype(np.int64) for n in self.inputs})[0]
            mask = batch["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
            vectors = pooled @ self.weight.T + (self.bias if self.bias is not None else 0.0)
            out[rows] = normalize_rows(vectors)
        return out
