"""Training loop behind `freenet train`: any registered model, ImageFolder or the shipped digits.

Checkpoints are written atomically every epoch (`last.ckpt`, and `best.ckpt` on a new best
validation accuracy) with the optimizer, scheduler and RNG state, so `resume=True` continues exactly
where a run stopped. Each checkpoint records the model name and constructor arguments in `meta`, so
`create_model(name, checkpoint=PATH)` rebuilds the right classifier.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader

from .data import load_split
from .registry import create_model, model_info


@dataclass
class TrainConfig:
    model: str
    dataset: str = "digits"
    out_dir: Path = Path("runs/train")
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    image_size: int | None = None
    seed: int = 0
    resume: bool = False
    workers: int = 0
    max_steps_per_epoch: int | None = None  # for smoke tests


@dataclass
class TrainResult:
    best_acc: float
    last_acc: float
    epochs_run: int
    checkpoint: Path
    history: list[dict] = field(default_factory=list)


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += (model(x).argmax(1) == y).sum().item()
        total += len(y)
    return correct / max(total, 1)


def train(cfg: TrainConfig, console: Console | None = None) -> TrainResult:
    console = console or Console()
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
    model_info(cfg.model)  # unknown names fail before any data is loaded
    torch.manual_seed(cfg.seed)
    data = load_split(cfg.dataset, cfg.image_size, cfg.seed)
    model_kwargs = {"num_classes": data.num_classes}
    model = create_model(cfg.model, **model_kwargs)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last, best = out / "last.ckpt", out / "best.ckpt"

    g = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(data.train, cfg.batch_size, shuffle=True, generator=g, num_workers=cfg.workers, drop_last=len(data.train) > cfg.batch_size)
    val_loader = DataLoader(data.val, 256, num_workers=cfg.workers)
    steps = len(train_loader) if cfg.max_steps_per_epoch is None else min(len(train_loader), cfg.max_steps_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Warm-up then cosine decay as a pure function of the step, so a resumed run that asks for more
    # epochs simply stretches the schedule (the scheduler's saved state is only the step count).
    total, warm = cfg.epochs * steps, max(1, int(0.15 * cfg.epochs * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: (i + 1) / warm if i < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (i - warm) / max(1, total - warm))))
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)

    start_epoch, best_acc, history = 0, -1.0, []
    if cfg.resume and last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=True)
        if ck["meta"]["model"] != cfg.model:
            raise ValueError(f"{last} belongs to {ck['meta']['model']!r}, not {cfg.model!r}; use another --out")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        g.set_state(ck["rng"]["loader"])
        torch.set_rng_state(ck["rng"]["torch"])
        start_epoch, best_acc, history = ck["epoch"] + 1, ck["meta"]["best_acc"], list(ck["meta"]["history"])
        console.print(f"resuming {cfg.model} from epoch {start_epoch} ({last})")
    elif cfg.resume:
        console.print(f"[yellow]no checkpoint at {last}; starting from scratch[/]")

    meta_base = {
        "model": cfg.model,
        "model_kwargs": model_kwargs,
        "dataset": data.name,
        "input_size": list(data.input_size),
        "mean": list(data.mean),
        "std": list(data.std),
        "train_config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
    }
    acc = history[-1]["val_acc"] if history else 0.0
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console, transient=False) as progress:
        ep_task = progress.add_task(f"{cfg.model} epochs", total=cfg.epochs, completed=start_epoch, info="")
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            t0, seen, loss_sum = time.perf_counter(), 0, 0.0
            b_task = progress.add_task(f"  epoch {epoch + 1}", total=steps, info="")
            for step, (x, y) in enumerate(train_loader):
                if step >= steps:
                    break
                loss = loss_fn(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                seen += len(y)
                loss_sum += loss.item() * len(y)
                progress.update(b_task, advance=1, info=f"loss {loss.item():.3f}")
            progress.remove_task(b_task)
            acc = evaluate(model, val_loader)
            rec = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "val_acc": acc, "seconds": time.perf_counter() - t0}
            history.append(rec)
            improved = acc > best_acc
            best_acc = max(best_acc, acc)
            ck = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch,
                "rng": {"torch": torch.get_rng_state(), "loader": g.get_state()},
                "meta": {**meta_base, "epoch": epoch + 1, "val_acc": acc, "best_acc": best_acc, "history": history},
            }
            _atomic_save(ck, last)
            if improved:
                _atomic_save(ck, best)
            progress.update(ep_task, advance=1, info=f"val acc {acc:.3f} (best {best_acc:.3f})")
    return TrainResult(best_acc, acc, len(history), best if best.exists() else last, history)
