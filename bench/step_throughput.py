"""One SGD training step of a fusion model: modalities batched (one conv call) vs a per-modality loop, and, when
``FUSIONLAB_REFERENCE_CEN`` names a checkout of github.com/yikaiw/CEN, the reference implementation's model.

Batched and loop run the same weights from the same starting state; their outputs are checked equal before timing.
Rounds alternate between the variants so drift in machine load hits all alike. Prints ms/step, samples/s, GFLOP/s
and the ratio against the loop; on CUDA also TFLOP/s, MFU (fraction of the device's bf16 dense peak) and peak memory
per sample.

    python bench/step_throughput.py --backbone resnet50 --batch 4 --modalities 2 --size 128x128
    python bench/step_throughput.py --backbone resnet101 --batch 8 --size 480x640 --amp bf16 --channels-last --fused
    python bench/step_throughput.py --backbone resnet50 --batch 4 --size 128x128 --compare-batchnorm

``--compare-batchnorm`` adds the batched model with ``ModalBatchNorm2d``'s ``"sliced"`` execution (each slice's
batch norm written into one output, no ``torch.cat``) next to the default (``"cat"``: chunk, one BN per slice,
``torch.cat``), timed in the same rounds, and first checks that one training-mode forward from the same weights
gives the same logits and loss under both.

The reference model (``semantic_segmentation/models/model.py``: ``refinenet(num_layers, num_classes, num_parallel,
bn_threshold)``) takes a list of per-modality tensors and runs every conv once per modality; it is timed as it
trains (fp32, contiguous, foreach SGD) unless ``--reference-settings same`` gives it this run's amp / memory format /
fused optimiser too. It has different (random) weights: only its time is compared, not its outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from fusionlab.models import build, set_batchnorm_implementation, set_modality_loop
from fusionlab.models.flops import count_flops, mfu, peak_tflops

REFERENCE_ENV = "FUSIONLAB_REFERENCE_CEN"

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cen")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--modalities", type=int, default=2, help="number of modalities M")
    parser.add_argument("--size", default="128x128", help="HxW")
    parser.add_argument("--num-classes", type=int, default=40)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per round (compilation happens here)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["off", "bf16"], default="off", help="bf16 autocast for forward + loss")
    parser.add_argument("--channels-last", action="store_true", help="model and inputs in torch.channels_last")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (batched and loop alike)")
    parser.add_argument("--fused", action="store_true", help="fused SGD kernel (CUDA)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's bf16 dense peak, for MFU on a device the built-in table lacks")
    parser.add_argument("--reference-settings", choices=["as-published", "same"], default="as-published")
    parser.add_argument("--compare-batchnorm", action="store_true",
                        help="also time the batched model with ModalBatchNorm2d's sliced (no torch.cat) execution")
    return parser.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(args: argparse.Namespace, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if args.amp == "bf16" else contextlib.nullcontext()


@dataclass
class Variant:
    """Something to time: a step function and how to reset it to its starting state before each round."""

    label: str
    step: Callable[[], None]
    reset: Callable[[], None]
    flops: float
    times: list[float] = field(default_factory=list)
    peak_bytes: int = 0


def fusion_variants(args: argparse.Namespace, device: torch.device, x: torch.Tensor, target: torch.Tensor
                    ) -> tuple[list[Variant], float, dict | None]:
    """Ours, batched and as a per-modality loop (one model, toggled), the largest output difference, and with
    ``--compare-batchnorm`` the batched model with the "sliced" batch norm plus the differences between the two."""
    names = ["rgb", "depth", "hha", "normal", "shade"][: args.modalities]
    torch.manual_seed(0)
    model = build(args.model, backbone=args.backbone, num_classes=args.num_classes, modalities=names).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-5,
                                fused=True if args.fused else None)
    start_state = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))

    model.eval()  # same weights, no dropout: the two executions must agree
    with torch.no_grad(), autocast(args, device):
        outputs = []
        for loop in (False, True):
            set_modality_loop(model, loop)
            outputs.append(model(x).branches.float())
    tolerance = {"rtol": 2e-2, "atol": 2e-2} if args.amp == "bf16" else {"rtol": 1e-3, "atol": 1e-4}
    torch.testing.assert_close(outputs[0], outputs[1], **tolerance)
    max_diff = (outputs[0] - outputs[1]).abs().max().item()
    model.train()
    set_modality_loop(model, False)

    def loss_of(module: torch.nn.Module):
        with autocast(args, device):
            out = module(x)
            loss = sum(F.cross_entropy(branch, target) for branch in out.branches)
            return out, loss + F.cross_entropy(out.ensemble, target) + model.regularization_loss()

    bn_diff = None
    if args.compare_batchnorm:  # training mode: batch statistics per modality slice, the path that differs
        forwards = []
        for implementation in ("sliced", "cat"):
            model.load_state_dict(start_state[0])
            set_batchnorm_implementation(model, implementation)
            torch.manual_seed(0)  # same dropout masks
            with torch.no_grad():
                out, loss = loss_of(model)
            forwards.append((out.branches.float(), loss.float()))
        (logits_s, loss_s), (logits_c, loss_c) = forwards
        torch.testing.assert_close(logits_s, logits_c, **tolerance)
        bn_diff = {"logits": (logits_s - logits_c).abs().max().item(), "loss": (loss_s - loss_c).abs().item()}
        model.load_state_dict(start_state[0])
        set_batchnorm_implementation(model, "cat")

    def step_of(module: torch.nn.Module) -> Callable[[], None]:
        def step() -> None:
            _, loss = loss_of(module)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    flops = count_flops(step_of(model))
    runner = torch.compile(model) if args.compile else model

    def reset(loop: bool, batchnorm: str = "cat") -> Callable[[], None]:
        def apply() -> None:
            model.load_state_dict(start_state[0])
            optimizer.load_state_dict(start_state[1])
            set_modality_loop(model, loop)  # compiled: one guarded graph per setting, both cached after round 1
            set_batchnorm_implementation(model, batchnorm)
        return apply

    step = step_of(runner)
    variants = [Variant("batched", step, reset(False), flops),
                Variant("per-modality loop", step, reset(True), flops)]
    if args.compare_batchnorm:
        variants.insert(1, Variant("batched, BN sliced", step, reset(False, "sliced"), flops))
    return variants, max_diff, bn_diff


class ReferenceUnavailable(RuntimeError):
    pass


def reference_module(checkout: str | Path):
    """``models.model`` of a yikaiw/CEN checkout (its root or its ``semantic_segmentation`` folder)."""
    root = Path(checkout).expanduser()
    candidates = [root / "semantic_segmentation", root]
    for folder in candidates:
        if (folder / "models" / "model.py").is_file():
            break
    else:
        looked = ", ".join(str(c / "models" / "model.py") for c in candidates)
        raise ReferenceUnavailable(
            f"{REFERENCE_ENV}={checkout} does not hold the reference CEN model: no file at {looked}. Point it at a "
            f"checkout of https://github.com/yikaiw/CEN (git clone https://github.com/yikaiw/CEN) or unset it.")
    for name in [n for n in sys.modules if n in ("models", "utils") or n.startswith(("models.", "utils."))]:
        del sys.modules[name]  # the reference's top-level package names, not someone else's
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("models.model")
    except ImportError as error:
        raise ReferenceUnavailable(f"importing {folder / 'models' / 'model.py'} failed: {error} (install what the "
                                   f"reference imports, e.g. its utils/helpers.py's dependencies)") from error
    finally:
        sys.path.remove(str(folder))


def reference_variant(args: argparse.Namespace, device: torch.device, x: torch.Tensor, target: torch.Tensor,
                      checkout: str) -> Variant:
    """The reference model at the same backbone, classes, modalities, input and batch; its loss as its training
    script forms it (cross-entropy on every output, L1 on half of each bn2's scaling factors per modality)."""
    depth = {"resnet50": 50, "resnet101": 101, "resnet152": 152}.get(args.backbone)
    if depth is None:
        raise ReferenceUnavailable(f"the reference CEN has ResNet-50/101/152 only, not {args.backbone}")
    if args.modalities != 2:  # its Exchange reads bn[0] and bn[1] only
        raise ReferenceUnavailable(f"the reference CEN exchanges between exactly 2 modalities, not {args.modalities}")
    module = reference_module(checkout)
    torch.manual_seed(0)
    model = module.refinenet(depth, args.num_classes, args.modalities, 2e-2).to(device)
    same = args.reference_settings == "same"
    if same and args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-5,
                                fused=True if same and args.fused else None)
    start_state = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
    bn2 = [(m, bn) for block in model.modules() if isinstance(block, module.Bottleneck)
           for m, bn in enumerate(block.bn2_list)]
    inputs = [m if same else m.contiguous() for m in x.unbind(0)]  # the reference's list of modalities
    runner = torch.compile(model) if same and args.compile else model

    def step() -> None:
        with autocast(args, device) if same else contextlib.nullcontext():
            outs, _ = runner(inputs)
            loss = sum(F.cross_entropy(out, target) for out in outs)
            half = [bn.weight[m * (bn.weight.numel() // 2):(m + 1) * (bn.weight.numel() // 2)] for m, bn in bn2]
            loss = loss + 2e-4 * torch.stack([gamma.abs().sum() for gamma in half]).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def reset() -> None:
        model.load_state_dict(start_state[0])
        optimizer.load_state_dict(start_state[1])

    model.train()
    return Variant(f"reference yikaiw/CEN ({args.reference_settings})", step, reset, count_flops(step))


def time_variants(variants: list[Variant], args: argparse.Namespace, device: torch.device) -> None:
    for _ in range(args.rounds):
        for variant in variants:
            variant.reset()
            for _ in range(args.warmup):
                variant.step()
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            began = time.perf_counter()
            for _ in range(args.steps):
                variant.step()
            sync(device)
            variant.times.append((time.perf_counter() - began) / args.steps)
            if device.type == "cuda":
                variant.peak_bytes = max(variant.peak_bytes, torch.cuda.max_memory_allocated(device))


def run(argv: list[str] | None = None, console: Console | None = None) -> dict:
    """Run the benchmark, print its table, and return the figures (``rows``, ``ratio``, ``max_diff``)."""
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    height, width = (int(v) for v in args.size.lower().split("x"))
    x = torch.randn(args.modalities, args.batch, 3, height, width, device=device)
    if args.channels_last:
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, x.shape[:2])
    target = torch.randint(0, args.num_classes, (args.batch, height // 4, width // 4), device=device)

    variants, max_diff, bn_diff = fusion_variants(args, device, x, target)
    checkout = os.environ.get(REFERENCE_ENV)
    if checkout:
        variants.append(reference_variant(args, device, x, target, checkout))
    time_variants(variants, args, device)

    peak = args.peak_tflops or (peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None)
    looped = statistics.median(next(v for v in variants if v.label == "per-modality loop").times)
    settings = ", ".join(s for s, on in (("bf16", args.amp == "bf16"), ("channels-last", args.channels_last),
                                          ("compile", args.compile), ("fused", args.fused)) if on) or "fp32"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    table = Table(title=f"{args.model} {args.backbone}, batch {args.batch}, {args.modalities}x3x{height}x{width}, "
                        f"{settings}; {name}; max |batched - loop| = {max_diff:.2e}")
    columns = ["execution", "ms/step", "samples/s", "GFLOP/s", "speed-up vs loop"]
    if device.type == "cuda":
        columns += ["TFLOP/s", "MFU (bf16 peak)", "peak GiB", "peak MiB/sample"]
    for column in columns:
        table.add_column(column, justify="right")
    rows = []
    for variant in variants:
        seconds = statistics.median(variant.times)
        row = {"execution": variant.label, "ms_per_step": seconds * 1e3, "samples_per_s": args.batch / seconds,
               "gflops_per_s": variant.flops / seconds / 1e9, "speedup_vs_loop": looped / seconds}
        cells = [variant.label, f"{row['ms_per_step']:.1f}", f"{row['samples_per_s']:.2f}",
                 f"{row['gflops_per_s']:.1f}", f"{row['speedup_vs_loop']:.3f}x"]
        if device.type == "cuda":
            row["tflops_per_s"] = variant.flops / seconds / 1e12
            row["mfu"] = mfu(variant.flops, seconds, peak) if peak else None
            row["peak_bytes"] = variant.peak_bytes
            cells += [f"{row['tflops_per_s']:.1f}", f"{row['mfu']:.1%}" if peak else "n/a (--peak-tflops)",
                      f"{variant.peak_bytes / 2**30:.2f}", f"{variant.peak_bytes / args.batch / 2**20:.0f}"]
        table.add_row(*cells)
        rows.append(row)
    console = console or Console(width=160)
    console.print(table)
    ratio = rows[0]["speedup_vs_loop"]
    console.print(f"batched / per-modality loop = {ratio:.3f}x; training step: {variants[0].flops / 1e9:.2f} GFLOP; "
                  f"median of {args.rounds} rounds x {args.steps} steps (each after {args.warmup} warm-up steps)"
                  + (f"; peak {peak} TFLOP/s bf16 dense" if peak else ""))
    if bn_diff is not None:
        by_label = {v.label: statistics.median(v.times) for v in variants}
        cat, sliced = by_label["batched"], by_label["batched, BN sliced"]
        paired = [s / c for c, s in zip(variants[0].times, variants[1].times, strict=True)]
        console.print(f"batch norm sliced vs chunk+cat: max |logits difference| = {bn_diff['logits']:.2e}, "
                      f"|loss difference| = {bn_diff['loss']:.2e} (training-mode forward, same weights); "
                      f"{sliced * 1e3:.1f} vs {cat * 1e3:.1f} ms/step (median), sliced / chunk+cat per round: "
                      + ", ".join(f"{r:.3f}" for r in paired))
    if device.type == "cuda":
        console.print("peak memory: torch.cuda.max_memory_allocated over the timed steps (weights, gradients and "
                      "optimiser state included)")
    return {"rows": rows, "ratio": ratio, "max_diff": max_diff, "flops_per_step": variants[0].flops,
            "batchnorm_diff": bn_diff}


def main() -> None:
    try:
        run()
    except ReferenceUnavailable as error:
        sys.exit(f"step_throughput: {error}")


if __name__ == "__main__":
    main()
