"""One SGD training step of a fusion model: modalities batched (one conv call) vs a per-modality loop.

Both run the same weights from the same starting state; their outputs are checked equal before timing. Rounds
alternate between the two so drift in machine load hits both alike. Prints ms/step, samples/s and the ratio.

    python bench/step_throughput.py --backbone resnet50 --batch 4 --modalities 2 --size 128x128
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from fusionlab.models import build, set_modality_loop


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cen")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--modalities", type=int, default=2, help="number of modalities M")
    parser.add_argument("--size", default="128x128", help="HxW")
    parser.add_argument("--num-classes", type=int, default=40)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model, optimizer, x, target) -> None:
    out = model(x)
    loss = sum(F.cross_entropy(branch, target) for branch in out.branches)
    loss = loss + F.cross_entropy(out.ensemble, target) + model.regularization_loss()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    height, width = (int(v) for v in args.size.lower().split("x"))
    names = ["rgb", "depth", "hha", "normal", "shade"][: args.modalities]
    torch.manual_seed(0)
    model = build(args.model, backbone=args.backbone, num_classes=args.num_classes, modalities=names).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-5)
    start_state = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
    x = torch.randn(args.modalities, args.batch, 3, height, width, device=device)
    target = torch.randint(0, args.num_classes, (args.batch, height // 4, width // 4), device=device)

    model.eval()  # same weights, no dropout: the two executions must agree
    with torch.no_grad():
        outputs = []
        for loop in (False, True):
            set_modality_loop(model, loop)
            outputs.append(model(x).branches)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-3, atol=1e-4)
    max_diff = (outputs[0] - outputs[1]).abs().max().item()
    model.train()

    with FlopCounterMode(display=False) as counter:
        train_step(model, optimizer, x, target)
    flops_per_step = counter.get_total_flops()

    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for loop in (False, True):
            model.load_state_dict(start_state[0])
            optimizer.load_state_dict(start_state[1])
            set_modality_loop(model, loop)
            for _ in range(args.warmup):
                train_step(model, optimizer, x, target)
            sync(device)
            began = time.perf_counter()
            for _ in range(args.steps):
                train_step(model, optimizer, x, target)
            sync(device)
            times[loop].append((time.perf_counter() - began) / args.steps)

    batched, looped = statistics.median(times[False]), statistics.median(times[True])
    table = Table(title=f"{args.model} {args.backbone}, batch {args.batch}, {args.modalities}x3x{height}x{width}, "
                        f"{device.type}, {torch.get_num_threads()} threads; max |batched - loop| = {max_diff:.2e}")
    for column in ("execution", "ms/step", "samples/s", "GFLOP/s", "speed-up vs loop"):
        table.add_column(column, justify="right")
    for label, seconds in (("batched", batched), ("per-modality loop", looped)):
        table.add_row(label, f"{seconds * 1e3:.1f}", f"{args.batch / seconds:.2f}",
                      f"{flops_per_step / seconds / 1e9:.1f}", f"{looped / seconds:.3f}x")
    Console(width=140).print(table)
    print(f"training step: {flops_per_step / 1e9:.2f} GFLOP; median of {args.rounds} rounds x {args.steps} steps")


if __name__ == "__main__":
    main()
