"""Model commands of the `freenet` CLI: `freenet models` and `freenet train`.

Kept thin: they parse options and print; the work lives in registry.py, profile.py and train.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def models(
    names: Annotated[list[str] | None, typer.Argument(help="Models to show (default: every registered one). 'timm:<name>' works too.")] = None,
    macs: Annotated[bool, typer.Option(help="Count MACs (runs one forward pass per model).")] = True,
) -> None:
    """Table of every registered model: params, MACs at its input size, input size, source.

    MACs are counted with torch.utils.flop_counter (conv and matmul FLOPs) and reported as FLOPs/2.
    """
    from .profile import count_macs, count_params
    from .registry import create_model, list_models, model_info

    names = names or list_models()
    table = Table(title="Registered models (random init; MACs = FLOPs/2 from torch.utils.flop_counter)")
    for col in ("model", "family", "source", "input", "params (M)", "MACs (M)"):
        table.add_column(col, justify="right" if "(" in col else "left", no_wrap=True)
    with console.status("counting...") as status:
        for name in names:
            status.update(f"building {name}")
            try:
                info = model_info(name)
            except ValueError as e:
                raise typer.BadParameter(str(e)) from None
            model = create_model(name)
            mac = f"{count_macs(model, info.input_size) / 1e6:.1f}" if macs else "—"
            table.add_row(
                name, info.family, info.source, "x".join(map(str, info.input_size)), f"{count_params(model) / 1e6:.3f}", mac
            )
    console.print(table)


def train(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. freenet_tiny.")],
    data: Annotated[str, typer.Option("--data", help="'digits' (ships with scikit-learn) or an ImageFolder directory.")] = "digits",
    out: Annotated[Path, typer.Option(help="Checkpoint directory (last.ckpt, best.ckpt).")] = Path("runs/train"),
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    image_size: Annotated[int | None, typer.Option(help="Input size (default 32 for digits, 224 otherwise).")] = None,
    seed: int = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.ckpt if it exists.")] = False,
) -> None:
    """Train a registered model with progress bars, per-epoch checkpoints and resume."""
    from .train import TrainConfig
    from .train import train as run_train

    try:
        result = run_train(
            TrainConfig(model, data, out, epochs, batch_size, lr, image_size=image_size, seed=seed, resume=resume),
            console,
        )
    except (ValueError, FileNotFoundError) as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    console.print(
        f"best val acc {result.best_acc:.3f} after {result.epochs_run} epochs; checkpoint {result.checkpoint}\n"
        f"reload with: freenet.create_model({model!r}, checkpoint={str(result.checkpoint)!r})"
    )


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("train")(train)
