"""What a run leaves behind: metrics.json and the lines that summarize the test, and
the plots: curves.png (loss and error per epoch) and kernels.png (the first layer's
kernels, the paper's Figure 3)."""
from __future__ import annotations

import io
import json
import math
import os
import sys

import numpy as np

from alexnet import write_atomic
from engine.backend import gpu_routes, to_numpy
from training.environment import environment
from training.metrics import class_errors, hardest_classes
from training.state import TrainingError


def tf32_on() -> bool:
    """Whether CuPy's float32 matrix products use TF32 on the tensor cores (CUPY_TF32)."""
    return os.environ.get("CUPY_TF32", "0") not in ("", "0")


def write_json(path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` safely (alexnet.write_atomic): a stop or a
    full disk mid-write leaves the old file whole, and a link planted at ``path`` is
    replaced, not followed."""
    write_atomic(path, json.dumps(obj, indent=2).encode())


def report(test, state, dataset, out_dir, model, config, time_limited=False,
           metrics_name=None, tested_last=False, written=()) -> dict:
    """Test errors to the console and to out_dir/metrics.json (or ``metrics_name``, for
    --eval-only, which writes nothing else); ``written``: the other files the run
    wrote, for the line that lists them. A metrics file that cannot be written is a
    TrainingError, after the errors are printed."""
    primary = "tencrop_" if config.ten_crop else ""
    metrics = dict(
        dataset=dataset.name, data_source=dataset.source, model=model.config["preset"],
        num_params=model.num_params(), device=config.device,
        test_top1_error=test[f"{primary}top1_error"],
        test_top5_error=test[f"{primary}top5_error"],
        test_eval=(("ten-crop" if test.get("tencrop_crops", 10) == 10 else "five-crop")
                   if config.ten_crop else "centre crop"),
        test_center_top1_error=test["top1_error"], test_center_top5_error=test["top5_error"],
        best_epoch=state.best_epoch, best_val_top1_error=state.best_val,
        epochs=state.epoch, history=state.history, config=model.config,
        args=config.settings(), environment=environment(config.device))
    if tested_last:           # the best epoch's checkpoint was not found
        metrics["tested_epoch"] = state.epoch
        if state.step:
            metrics["tested_step"] = state.step
    if time_limited:          # tested before the planned epochs were done
        metrics.update(stopped_by_time_limit=True, epochs_planned=config.epochs)
    if config.device == "cuda":
        metrics["cupy_tf32"] = tf32_on()
        metrics["gpu_routes"] = gpu_routes()
    if config.ten_crop:
        metrics.update(test_tencrop_top1_error=test["tencrop_top1_error"],
                       test_tencrop_top5_error=test["tencrop_top5_error"])
    conf = test.get(f"{primary}confusion")
    if conf is not None:      # where the errors are: by true class, on the primary crops
        per_class = class_errors(conf, dataset.classes)
        metrics.update(test_confusion=conf.tolist(), test_class_top1_error=per_class)
    print_test(test, state, dataset, config, tested_last)
    if conf is not None:
        print("test error by true class, the hardest: "
              + ", ".join(f"{c} {100 * e:.1f}%" for c, e in hardest_classes(per_class, 5))
              + " (all of them, and the confusion matrix: metrics.json)")
    path = os.path.join(out_dir, metrics_name or "metrics.json")
    try:
        os.makedirs(out_dir, exist_ok=True)
        write_json(path, metrics)
    except OSError as e:
        raise TrainingError(f"cannot write {path} ({e.strerror or e}); the test errors "
                            f"are printed above" + ("" if metrics_name else
                            f", and the checkpoints in {out_dir} are kept")) from None
    order = ("last.npz", "best.npz", "curves.png", "kernels.png")
    others = [name for name in order if name in written]
    print(f"wrote {path}" + "".join(f", {name}" for name in others))
    return metrics


def print_test(test, state, dataset, config, tested_last) -> None:
    """The test errors, and which epoch's weights they are of."""
    stopped = (f"epoch {state.epoch}, the last" if not state.step else
               f"{state.epoch} epoch(s) and {state.step} step(s), where it stopped")
    which = (f"{stopped}: best.npz was not this run's" if tested_last
             else f"best epoch {state.best_epoch}" if state.best_val is not None
             else f"epoch {state.best_epoch}, the last: no validation set")
    print(f"test ({len(dataset.test_x)} images, {which}): "
          f"centre crop top-1 error {100 * test['top1_error']:.2f}%, "
          f"top-5 error {100 * test['top5_error']:.2f}%")
    if config.ten_crop:
        crops = ("ten crops" if test.get("tencrop_crops", 10) == 10 else
                 "five crops (corners and centre; no mirrors: the net never saw one)")
        print(f"test, {crops}: top-1 error {100 * test['tencrop_top1_error']:.2f}%, "
              f"top-5 error {100 * test['tencrop_top5_error']:.2f}%")
        if config.no_crop:
            print("note: this net was trained without random crops, so the ten crops show "
                  "it shifted images it never saw; its centre-crop error is the fair figure")


# ---------------------------------------------------------------------------- plots

_plot_warned = []       # save_plots has said that matplotlib is missing


def save_plots(out_dir, history, model) -> list:
    """curves.png and kernels.png in ``out_dir``; returns the names of those written.

    Drawn on matplotlib Figure objects with the Agg canvas, not pyplot, so that a run
    started from a notebook does not change the notebook's plotting backend. Without
    matplotlib: no plots, and a one-time note on stderr (the checkpoints and
    metrics.json are written either way). A plot that cannot be written (a full disk)
    is a note too: the run goes on.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        if not _plot_warned:
            _plot_warned.append(True)
            print(f"note: no plots ({e}); install matplotlib (pip install matplotlib) "
                  f"for curves.png and kernels.png", file=sys.stderr)
        return []
    written = []
    if history:
        epochs = [h["epoch"] for h in history]
        fig = Figure(figsize=(10, 3.8))
        FigureCanvasAgg(fig)
        ax1, ax2 = fig.subplots(1, 2)
        validated = all(h["val_loss"] is not None for h in history)  # not --val-fraction 0
        ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
        if validated:
            ax1.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
        ax1.set_xlabel("epoch"), ax1.set_ylabel("cross-entropy"), ax1.legend()
        ax2.plot(epochs, [100 * h["train_top1_error"] for h in history], "o-", label="train")
        if validated:
            ax2.plot(epochs, [100 * h["val_top1_error"] for h in history], "o-",
                     label="validation")
        ax2.set_xlabel("epoch"), ax2.set_ylabel("top-1 error (%)"), ax2.legend()
        for prev, h in zip(history, history[1:]):
            if h["lr"] < prev["lr"] / 5:       # a dotted line at each drop by 10
                ax2.axvline(h["epoch"] - 0.5, color="gray", ls=":", lw=1)
        fig.tight_layout()
        written += save_figure(fig, out_dir, "curves.png")
    grid = kernel_grid(to_numpy(model.params["conv1.w"]))
    fig = Figure(figsize=(max(2.0, grid.shape[1] / 12), max(2.0, grid.shape[0] / 12)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
    ax.set_axis_off()
    return written + save_figure(fig, out_dir, "kernels.png")


def save_figure(fig, out_dir, name) -> list:
    """Write ``fig`` as out_dir/NAME safely; [NAME], or [] with a note if it failed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    try:
        write_atomic(os.path.join(out_dir, name), buf.getvalue())
    except OSError as e:
        print(f"note: could not write {os.path.join(out_dir, name)} ({e.strerror or e})",
              file=sys.stderr)
        return []
    return [name]


def kernel_grid(w, pad=1):
    """Tile conv1's kernels (F, C, kh, kw) into one image, each scaled to [0, 1]."""
    f, c, kh, kw = w.shape
    cols = int(math.ceil(math.sqrt(f)))
    rows = int(math.ceil(f / cols))
    chans = 3 if c == 3 else 1
    grid = np.ones((rows * (kh + pad) + pad, cols * (kw + pad) + pad, chans), np.float32)
    for i in range(f):
        k = w[i] if c == 3 else w[i, :1]
        k = (k - k.min()) / max(1e-12, float(k.max() - k.min()))
        r, q = divmod(i, cols)
        y0, x0 = pad + r * (kh + pad), pad + q * (kw + pad)
        grid[y0:y0 + kh, x0:x0 + kw] = k.transpose(1, 2, 0)
    return grid[..., 0] if chans == 1 else grid
