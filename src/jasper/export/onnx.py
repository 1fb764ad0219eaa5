"""ONNX copies of an exported head's encoder, in sentence-transformers' ONNX layout, and an ONNX Runtime embedder.

What sentence-transformers' own helpers write, by the same path (their helpers go through `optimum`, whose releases
pin transformers < 4.58; jasper runs on transformers 5, so it makes the same calls itself):
- `onnx/model.onnx`: the encoder (`input_ids`, `attention_mask`, `token_type_ids` -> `last_hidden_state`) from
  `torch.onnx.export`'s TorchScript exporter, the one `optimum` uses, with eager attention: a graph that ONNX
  Runtime's transformer optimizer can fuse;
- `onnx/model_O3.onnx`: that graph through ONNX Runtime's transformer optimizer at `optimum`'s O3 (fused attention,
  skip layer norm, bias + GELU with the fast GELU approximation; extended graph optimizations);
- `onnx/model_qint8_avx512_vnni.onnx`: dynamic int8 quantization of the fused graph with `optimum`'s avx512_vnni
  settings (per-channel symmetric int8 weights, uint8 activations).

The folder's own Pooling, Dense and Normalize modules do the rest, so `SentenceTransformer(folder, backend="onnx")`
reads the files wherever sentence-transformers' ONNX extra installs. Every file is checked against torch before it
is put in place (written beside its target and renamed: a kill or a failed check never leaves a partial file).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jasper.errors import JasperError
from jasper.eval.metrics import normalize_rows
from jasper.io import atomic_write
from jasper.prompts import folder_prompts, role_prompt
from jasper.teachers.fast_encode import LENGTH_SPREAD, sorted_batches

logger = logging.getLogger(__name__)
FP32_FILE = "onnx/model.onnx"
O3_FILE = "onnx/model_O3.onnx"
# int8 per CPU family, as optimum configures it for sentence-transformers' own exports: (file, unsigned weights).
# Without VNNI (AVX2 alone) unsigned-times-signed products can saturate, so AVX2's weights are unsigned too
INT8_TARGETS = {
    "avx512_vnni": ("onnx/model_qint8_avx512_vnni.onnx", False),
    "avx512": ("onnx/model_qint8_avx512.onnx", False),
    "avx2": ("onnx/model_quint8_avx2.onnx", True),
    "arm64": ("onnx/model_qint8_arm64.onnx", False),
}
INT8_FILES = tuple(file for file, _ in INT8_TARGETS.values())


def int8_target() -> str:
    """This CPU's int8 family: arm64, avx512_vnni (AVX512-VNNI or AVX-VNNI), avx512 or avx2."""
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = set(Path("/proc/cpuinfo").read_text(encoding="utf-8").split())
    except OSError:  # not Linux: the conservative choice
        return "avx2"
    if flags & {"avx512_vnni", "avx_vnni"}:
        return "avx512_vnni"
    return "avx512" if {"avx512f", "avx512bw"} <= flags else "avx2"


INT8_FILE = INT8_TARGETS[int8_target()][0]  # this machine's
# by measured speed (docs/performance.md); this CPU's int8 before any other family's
FASTEST_FIRST = (INT8_FILE, *INT8_FILES, O3_FILE, FP32_FILE)
OPSET = 14
PARITY_ATOL = 1e-4  # model.onnx vs torch, on the token vectors
FUSED_MIN_COSINE = 0.9999  # model_O3.onnx (fast GELU) vs torch, sentence vectors
INT8_MIN_MEAN_COSINE = 0.99  # the int8 copy vs torch, sentence vectors
ORT_MODEL_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "mpnet": "bert", "distilbert": "bert"}
PARITY_TEXTS = ["one", "three words here", "a longer sentence, to check that the sequence axis is dynamic"] * 2


def needs_onnxruntime() -> Any:
    """onnxruntime, or one line naming the extra that brings it."""
    try:
        import onnxruntime
    except ImportError:
        raise JasperError("ONNX export and serving need the onnx extra: pip install 'jasper-distill[onnx]'") from None
    return onnxruntime


def export_onnx(folder: Path, quantize: str | None = None) -> list[Path]:
    """Write `folder/onnx/model.onnx` and, for encoders ONNX Runtime's optimizer knows, `model_O3.onnx`; with
    quantize='int8', `model_qint8_avx512_vnni.onnx` too. Each is checked against torch before it is kept."""
    from transformers import AutoModel, AutoTokenizer

    needs_onnxruntime()
    choices = ["int8", *(f"int8-{t}" for t in INT8_TARGETS)]
    if quantize is not None and quantize not in choices:
        raise JasperError(f"--quantize {quantize}: choose {', '.join(choices)} (int8: for this machine's CPU)")
    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    names: list[str] = [
        n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names
    ]
    reference = _Reference(folder, model, tokenizer, names)
    (folder / "onnx").mkdir(exist_ok=True)
    written = [_write(folder / FP32_FILE, lambda tmp: _export(model, tokenizer, names, tmp), reference.exact)]
    source = written[0]
    model_type = ORT_MODEL_TYPES.get(str(model.config.model_type))
    if model_type is not None:
        fused = _write(folder / O3_FILE, lambda tmp: _optimize(source, tmp, model_type, model.config), reference.close)
        written.append(fused)
        source = fused
    if quantize is not None:
        target = quantize.removeprefix("int8-") if quantize != "int8" else int8_target()
        file, unsigned = INT8_TARGETS[target]
        plain = written[0]  # sentence-transformers quantizes the plain graph: its int8 kernels beat the fused ones
        written.append(_write(folder / file, lambda tmp: _quantize(plain, tmp, unsigned), reference.int8))
        logger.info("ONNX int8 for %s CPUs: %s", target, file)
    return written


def _write(target: Path, make: Any, check: Any) -> Path:
    """Make the file beside `target`, check it, and rename it into place (or leave nothing)."""

    def write(tmp: Path) -> None:
        make(tmp)
        check(tmp, target.name)

    atomic_write(target, write)
    return target


def _export(model: Any, tokenizer: Any, names: list[str], out: Path) -> None:
    """The TorchScript exporter (what `optimum` runs), dynamic batch and sequence axes."""
    sample = tokenizer(["a short text", "a somewhat longer text for the second row"], padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with torch.no_grad():
        torch.onnx.export(_Encoder(model).eval(), tuple(sample[n] for n in names), str(out), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)  # fmt: skip


def _optimize(source: Path, out: Path, model_type: str, config: Any) -> None:
    """ONNX Runtime's transformer optimizer at `optimum`'s O3: fusions, fast GELU, extended graph optimizations."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions(model_type)
    options.enable_gelu_approximation = True
    options.enable_embed_layer_norm = False  # as optimum: its fused op ignores a custom position-id layout
    with _quiet():
        optimized = optimize_model(str(source), model_type, int(config.num_attention_heads), int(config.hidden_size),
                                   optimization_options=options, opt_level=2)  # fmt: skip
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    logger.info("ONNX Runtime fused %s", ", ".join(f"{v} {k}" for k, v in fused.items()) or "nothing")
    optimized.save_model_to_file(str(out))


def _quantize(source: Path, out: Path, unsigned: bool = False) -> None:
    """Dynamic int8 quantization with `optimum`'s settings for a CPU family (per-channel symmetric weights, signed
    or unsigned, uint8 activations)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # a fused graph holds ONNX Runtime's own operators, whose outputs shape inference cannot type: float
    extra = {"WeightSymmetric": True, "ActivationSymmetric": False, "DefaultTensorType": onnx.TensorProto.FLOAT}
    weights = QuantType.QUInt8 if unsigned else QuantType.QInt8
    with _quiet():
        quantize_dynamic(str(source), str(out), per_channel=True, reduce_range=False, weight_type=weights,
                         extra_options=extra)  # fmt: skip


class _quiet:
    """The optimizer and the quantizer log a line per tensor on the root logger: keep them quiet."""

    def __enter__(self) -> None:
        logging.disable(logging.INFO)

    def __exit__(self, *exc: object) -> None:
        logging.disable(logging.NOTSET)


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


class _Reference:
    """Torch's outputs on a batch of another shape than the traced one, and the checks each file must pass."""

    def __init__(self, folder: Path, model: Any, tokenizer: Any, names: list[str]) -> None:
        self.folder, self.names = folder, names
        self.batch = tokenizer(PARITY_TEXTS, padding=True, return_tensors="np")
        with torch.no_grad():
            self.tokens = model(**{n: torch.from_numpy(self.batch[n]) for n in names}).last_hidden_state.numpy()
        self.mask = self.batch["attention_mask"].astype(bool)

    def _run(self, path: Path) -> np.ndarray:
        session = needs_onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.asarray(
            session.run(["last_hidden_state"], {n: self.batch[n].astype(np.int64) for n in self.names})[0]
        )

    def _cosines(self, path: Path) -> np.ndarray:
        """Per-text cosine of the mean-pooled token vectors, the file's against torch's."""
        weights = self.mask[..., None].astype(np.float64)
        found = normalize_rows((self._run(path) * weights).sum(1))
        expected = normalize_rows((self.tokens * weights).sum(1))
        return np.asarray((found * expected).sum(1))

    def _refuse(self, name: str, what: str) -> JasperError:
        return JasperError(f"the ONNX export '{self.folder / 'onnx' / name}' {what}: not written")

    def exact(self, path: Path, name: str) -> None:
        """The fp32 graph gives torch's token vectors (max |diff| <= PARITY_ATOL)."""
        diff = float(np.abs(self._run(path) - self.tokens)[self.mask].max())
        if diff > PARITY_ATOL:
            raise self._refuse(name, f"differs from torch by {diff:.2e} (limit {PARITY_ATOL:g})")
        logger.info("ONNX %s: max |diff| to torch %.1e", name, diff)

    def close(self, path: Path, name: str) -> None:
        """The fused graph (fast GELU) gives nearly torch's sentence vectors."""
        low = float(self._cosines(path).min())
        if low < FUSED_MIN_COSINE:
            raise self._refuse(
                name, f"gives sentence vectors at cosine {low:.5f} to torch's (limit {FUSED_MIN_COSINE})"
            )
        logger.info("ONNX %s: lowest cosine to torch %.6f", name, low)

    def int8(self, path: Path, name: str) -> None:
        """The int8 graph keeps the sentence vectors' direction."""
        mean = float(self._cosines(path).mean())
        if mean < INT8_MIN_MEAN_COSINE:
            raise self._refuse(name, f"gives sentence vectors at mean cosine {mean:.4f} to torch's")
        logger.info("ONNX %s: mean cosine to torch %.4f", name, mean)


class OnnxEmbedder:
    """One exported head run by ONNX Runtime: the ONNX encoder, then the folder's mean pooling, Dense and
    normalisation in numpy (what sentence-transformers' ONNX backend does). `jasper serve` wraps it in a
    `FolderEmbedder`."""

    def __init__(self, folder: Path, file: str = FP32_FILE, threads: int | None = None) -> None:
        from safetensors.numpy import load_file
        from transformers import AutoTokenizer

        ort = needs_onnxruntime()
        folder = Path(folder)
        if not (folder / file).is_file():
            raise JasperError(f"'{folder / file}' does not exist: run `jasper export RUN --format onnx` first")
        options = ort.SessionOptions()
        # no busy-waiting between runs: the tokenizer runs there, on the same cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(folder / file), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime raises its own types for a damaged or foreign file
            raise JasperError(
                f"'{folder / file}' cannot be loaded by ONNX Runtime ({type(error).__name__}): it is damaged or not "
                "an ONNX model. Export it again: `jasper export RUN --format onnx`"
            ) from None
        self.file = file
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [self.session.get_outputs()[0].name]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        # sentence-transformers < 6 kept it in sentence_bert_config.json; 6.x in the tokenizer's config
        self.max_length = int(config.get("max_seq_length") or min(self.tokenizer.model_max_length, 100_000))
        self.backend = _padded_backend(self.tokenizer, self.max_length)
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        dense = next(m["path"] for m in modules if m["type"].endswith("Dense"))
        weights = load_file(str(folder / dense / "model.safetensors"))
        self.weight, self.bias = weights["linear.weight"], weights.get("linear.bias")
        self.dims = [int(self.weight.shape[0])]
        self.prompts = folder_prompts(folder)  # (prompts, default prompt name), as sentence-transformers reads them

    def encode(self, texts: list[str], batch_size: int = 64, role: str = "text") -> np.ndarray:
        """L2-normalised vectors of `texts` read in `role` (with the folder's prompt for it), in order. (N, dim)

        Batches are sorted by length and never mix texts of very different lengths; each is tokenised by the
        tokenizer's Rust backend straight into int64 arrays, run, then pooled and projected in numpy.
        """
        prompt = role_prompt(*self.prompts, role)
        texts = [prompt + text for text in texts] if prompt else texts
        out = np.zeros((len(texts), self.dims[0]), dtype=np.float32)
        for rows in sorted_batches(np.array([len(t) for t in texts]), batch_size, spread=LENGTH_SPREAD):
            ids, mask = self._tokenize([texts[i] for i in rows])
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(self.outputs, {n: feeds[n] for n in self.inputs})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            vectors = pooled @ self.weight.T + (self.bias if self.bias is not None else 0.0)
            out[rows] = normalize_rows(vectors)
        return out

    def _tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) int64, padded to the batch's longest, cut at max_seq_length."""
        if self.backend is None:
            batch = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
            )
            return batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)
        encodings = self.backend.encode_batch(texts)
        return (
            np.array([e.ids for e in encodings], dtype=np.int64),
            np.array([e.attention_mask for e in encodings], dtype=np.int64),
        )


def _padded_backend(tokenizer: Any, max_length: int) -> Any:
    """The fast tokenizer's Rust backend set to pad each batch to its longest and cut at `max_length` (what the
    tokenizer's own call does, without its Python overhead); None for a tokenizer without one, or that pads left."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "padding_side", "right") != "right":
        return None
    backend = copy.deepcopy(backend)
    backend.enable_truncation(max_length=max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    backend.enable_padding(pad_id=pad_id, pad_token=tokenizer.pad_token or "[PAD]")
    return backend


def int8_file(folder: Path) -> str | None:
    """The int8 ONNX file an exported head holds (this CPU's family first), or None."""
    return next((f for f in (INT8_FILE, *INT8_FILES) if (Path(folder) / f).is_file()), None)


def fastest_file(folder: Path) -> str | None:
    """The fastest ONNX file an exported head holds, or None when it holds none."""
    return next((f for f in FASTEST_FIRST if (Path(folder) / f).is_file()), None)
