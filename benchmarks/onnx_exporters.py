"""Which ONNX graph runs fastest: the same head exported by `torch.onnx`'s two exporters (TorchScript, what `optimum`
and jasper use; `torch.export`, the newer one), and the TorchScript graph through ONNX Runtime's transformer
optimizer (jasper's `model_O3.onnx`), timed side by side on the same texts.

    python benchmarks/onnx_exporters.py runs/quickstart/export/dim-768 [--repeats 5] [--threads 2]

Prints texts/s at batch 64 and the median ms of one text for each graph, and the fusions each got.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from transformers import AutoModel, AutoTokenizer

from jasper.export.onnx import O3_FILE, OPSET, _Encoder, _export


def torch_export(model: object, tokenizer: object, names: list[str], out: Path) -> None:
    """The `torch.export`-based exporter (dynamo), with dynamic batch and sequence."""
    sample = tokenizer(["a short text", "a somewhat longer text for the second row"], padding=True, return_tensors="pt")  # type: ignore[operator]
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", min=2, max=512)
    shapes = {n: {0: batch, 1: sequence} for n in names}
    with torch.no_grad():
        torch.onnx.export(_Encoder(model).eval(), tuple(sample[n] for n in names), str(out), input_names=names,
                          output_names=["last_hidden_state"], dynamic_shapes=shapes, dynamo=True,
                          external_data=False, opset_version=max(OPSET, 18))  # fmt: skip


def rates(path: Path, tokenizer: object, texts: list[str], threads: int, repeats: int) -> tuple[float, float]:
    """(texts/s at batch 64, median ms of one text) through ONNX Runtime."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(batch: list[str]) -> None:
        encoded = tokenizer(batch, padding=True, truncation=True, max_length=64, return_tensors="np")  # type: ignore[operator]
        session.run(None, {n: encoded[n].astype(np.int64) for n in names})

    ordered = sorted(texts, key=len)
    run(ordered[:64])
    passes = []
    for _ in range(repeats):
        began = time.perf_counter()
        for start in range(0, len(ordered), 64):
            run(ordered[start : start + 64])
        passes.append(len(texts) / (time.perf_counter() - began))
    ones = []
    for text in texts[:200]:
        began = time.perf_counter()
        run([text])
        ones.append(1000 * (time.perf_counter() - began))
    return statistics.median(passes), statistics.median(ones)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("head", type=Path, help="an exported head folder (holding model_O3.onnx from jasper export)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.head)
    model = AutoModel.from_pretrained(args.head, attn_implementation="eager").eval()
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    from jasper.eval.sts import stsb_split

    pairs, _ = stsb_split("test", "../shared/data/stsb")
    texts = list(dict.fromkeys(pairs.left + pairs.right))[:1024] if pairs else ["a sentence to embed"] * 512
    with tempfile.TemporaryDirectory() as work:
        graphs = {"torchscript": Path(work) / "ts.onnx", "torch.export": Path(work) / "dynamo.onnx"}
        _export(model, tokenizer, names, graphs["torchscript"])
        torch_export(model, tokenizer, names, graphs["torch.export"])
        if (args.head / O3_FILE).is_file():
            graphs["torchscript + O3 (jasper's model_O3.onnx)"] = args.head / O3_FILE
        for name, path in graphs.items():
            ops = {node.op_type for node in onnx.load(str(path)).graph.node}
            fused = sorted(ops & {"Attention", "SkipLayerNormalization", "FastGelu", "BiasGelu", "Gelu"})
            texts_per_s, one = rates(path, tokenizer, texts, args.threads, args.repeats)
            print(f"{name:45s} {texts_per_s:8.1f} texts/s  one text {one:5.2f} ms  fused: {', '.join(fused) or '-'}")


if __name__ == "__main__":
    main()
