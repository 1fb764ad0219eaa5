"""Forward+backward time and peak memory of the relative-similarity loss: reference (P x P) vs fast (exact).

Each (m, impl) cell runs in a fresh subprocess so that CPU peak memory (ru_maxrss over the RSS before
the call) belongs to that cell alone; on CUDA, torch.cuda.max_memory_allocated is used. Also timed:
the whole three-loss objective (cosine + similarity + fast resim) on one head.

    python benchmarks/losses.py                      # CPU, m = 32 ... 4096
    python benchmarks/losses.py --device cuda        # GPU table
Writes benchmarks/results/losses.json (list of {m, impl, device, ms, peak_mb}).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TEACHER_DIM = 1152
# the reference holds a few P x P float32/bool matrices at once; skip it where that cannot fit
REFERENCE_BYTES_PER_CELL = 24


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_cell(m: int, impl: str, device: str, repeats: int) -> dict:
    """Time one cell in this process; returns {m, impl, device, ms, peak_mb}."""
    import torch

    from jasper.losses import DistillObjective
    from jasper.losses.resim import resim_loss, resim_loss_reference

    if impl == "fast-sort":  # force the O(P log^2 P) path where the fused CUDA kernel would be chosen
        from jasper.losses import resim_fast

        resim_fast.CUDA_DENSE_MAX_PAIRS = 0
    torch.manual_seed(0)
    dev = torch.device(device)
    student = torch.randn(m, TEACHER_DIM, device=dev, requires_grad=True)
    teacher = torch.randn(m, TEACHER_DIM, device=dev)
    objective = DistillObjective()

    graphed = None
    if impl == "objective-graphed":
        from jasper.losses.cuda_graph import graph_objective

        losses = {TEACHER_DIM: ["cosine", "similarity", "resim"]}
        graphed = graph_objective(objective, {TEACHER_DIM: (m, TEACHER_DIM)}, (m, TEACHER_DIM), losses, dev)

    def step() -> None:
        if graphed is not None:
            loss = graphed({TEACHER_DIM: student}, teacher)
        elif impl == "reference":
            loss = resim_loss_reference(student, teacher)
        elif impl in ("fast", "fast-sort"):
            loss = resim_loss(student, teacher)
        else:
            loss = objective({TEACHER_DIM: student}, teacher, {TEACHER_DIM: ["cosine", "similarity", "resim"]})["loss"]
        loss.backward()
        student.grad = None

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    if dev.type == "cuda":
        step()  # warm-up (kernels, allocator)
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        sync()
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        # one tiny call first, so library start-up (thread pools, kernels) is not counted as the loss's memory
        tiny_student = torch.randn(4, TEACHER_DIM, requires_grad=True)
        tiny_loss = objective(
            {TEACHER_DIM: tiny_student}, teacher[:4], {TEACHER_DIM: ["cosine", "similarity", "resim"]}
        )
        (tiny_loss["loss"] + resim_loss_reference(tiny_student, teacher[:4])).backward()
        before = _rss_mb()
        step()
        peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before, 0.0)
        step()  # warm-up done by the measured first call
    times = []
    for _ in range(repeats):
        sync()
        began = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - began)
    times.sort()
    return {"m": m, "impl": impl, "device": _device_name(dev), "ms": 1000 * times[len(times) // 2], "peak_mb": peak_mb}


def _device_name(dev: object) -> str:
    import torch

    if getattr(dev, "type", "cpu") == "cuda":
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def _repeats(m: int, impl: str, device: str) -> int:
    if device == "cuda":
        return 50 if m <= 1024 else 10
    if impl == "reference":
        return 3
    return 20 if m <= 256 else (5 if m <= 1024 else 1)


def _fits(m: int, device: str) -> bool:
    pairs = m * (m - 1) // 2
    need = pairs * pairs * REFERENCE_BYTES_PER_CELL
    if device == "cuda":
        import torch

        return need < 0.8 * torch.cuda.get_device_properties(0).total_memory
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return need < 0.5 * total


def main() -> None:
    """Run every cell in a subprocess, print the table, write the JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="32,128,256,512,1024,4096")
    parser.add_argument("--impls", help="comma-separated subset of the cells to run")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "losses.json"))
    args = parser.parse_args()
    if args.cell:
        m, impl = args.cell.split(":")
        print(json.dumps(run_cell(int(m), impl, args.device, _repeats(int(m), impl, args.device))))
        return
    rows: list[dict] = []
    skipped: list[str] = []
    for m in (int(x) for x in args.sizes.split(",")):
        for impl in args.impls.split(",") if args.impls else _default_impls(args.device):
            if impl == "reference" and not _fits(m, args.device):
                gib = (m * (m - 1) // 2) ** 2 * REFERENCE_BYTES_PER_CELL / 2**30
                skipped.append(f"m={m}: reference skipped, its P x P matrices would need about {gib:,.0f} GiB")
                continue
            command = [sys.executable, __file__, "--device", args.device, "--cell", f"{m}:{impl}"]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                skipped.append(f"m={m} {impl}: failed ({result.stderr.strip().splitlines()[-1:]})")
                continue
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"  m={m:5d} {impl:17s} {rows[-1]['ms']:10.2f} ms {rows[-1]['peak_mb']:10.1f} MB", flush=True)
    _print_table(rows, skipped)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    standard = [r for r in rows if r["impl"] in ("reference", "fast", "objective")]
    out.write_text(json.dumps(standard, indent=2) + "\n")
    print(f"wrote {out}")
    variants = [r for r in rows if r not in standard]
    if variants:  # the forced sort path and the CUDA-graph objective, kept apart from the standard schema
        extra = out.with_name(out.stem + "_variants.json")
        extra.write_text(json.dumps(variants, indent=2) + "\n")
        print(f"wrote {extra}")


def _default_impls(device: str) -> tuple[str, ...]:
    if device == "cuda":
        return ("reference", "fast", "fast-sort", "objective", "objective-graphed")
    return ("reference", "fast", "objective")


def _ms(cells: dict, m: int, impl: str) -> str:
    return f"{cells[(m, impl)]['ms']:.2f}" if (m, impl) in cells else "-"


def _print_table(rows: list[dict], skipped: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    cells = {(r["m"], r["impl"]): r for r in rows}
    device = rows[0]["device"] if rows else ""
    table = Table(title=f"relative-similarity loss, forward+backward, teacher dim {TEACHER_DIM} ({device})")
    sort_path = any(r["impl"] == "fast-sort" for r in rows)
    for column in (
        "m",
        "pairs P",
        "reference ms",
        "fast ms",
        "speed-up",
        "reference MB",
        "fast MB",
        "memory ratio",
        "3 losses ms",
        *(["3 losses, CUDA graph ms", "sort path ms"] if sort_path else []),
    ):
        table.add_column(column, justify="right")
    for m in sorted({r["m"] for r in rows}):
        ref, fast, obj = cells.get((m, "reference")), cells.get((m, "fast")), cells.get((m, "objective"))
        table.add_row(
            str(m),
            f"{m * (m - 1) // 2:,}",
            f"{ref['ms']:.2f}" if ref else "skipped",
            f"{fast['ms']:.2f}" if fast else "-",
            f"{ref['ms'] / fast['ms']:.1f}x" if ref and fast else "-",
            f"{ref['peak_mb']:.1f}" if ref else "skipped",
            f"{fast['peak_mb']:.1f}" if fast else "-",
            f"{ref['peak_mb'] / max(fast['peak_mb'], 1e-3):.0f}x" if ref and fast else "-",
            f"{obj['ms']:.2f}" if obj else "-",
            *([_ms(cells, m, "objective-graphed"), _ms(cells, m, "fast-sort")] if sort_path else []),
        )
    console = Console(width=160)
    console.print(table)
    for line in skipped:
        console.print(f"note: {line}")


if __name__ == "__main__":
    main()
