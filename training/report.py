"""What a run leaves behind: metrics.json and the lines that summarize the test, and
the plots: curves.png (loss and error per epoch) and kernels.png (the first layer's
kernels, the paper's Figure 3)."""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

from engine.backend import gpu_routes, to_numpy
from training.environment import environment
from training.metrics import class_errors, hardest_classes


def tf32_on() -> bool:
    """Whether CuPy's float32 matrix products use TF32 on the tensor cores (CUPY_TF32)."""
    return os.environ.get("CUPY_TF32", "0") not in ("", "0")


def write_json(path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file: a stop mid-write
    leaves the old file whole."""
    with open(path + ".part", "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(path + ".part", path)


def report(test, state, dataset, out_dir, model, config, time_limited=False,
           metrics_name=None, tested_last=False) -> dict:
    """Test errors to the console and to out_dir/metrics.json (or ``metrics_name``, for
    --eval-only, which writes nothing else)."""
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
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, metrics_name or "metrics.json"), metrics)
    print_test(test, state, dataset, config, tested_last)
    if conf is not None:
        print("test error by true class, the hardest: "
              + ", ".join(f"{c} {100 * e:.1f}%" for c, e in hardest_classes(per_class, 5))
              + " (all of them, and the confusion matrix: metrics.json)")
    if metrics_name:
        print(f"wrote {os.path.join(out_dir, metrics_name)}")
    else:
        print(f"wrote {out_dir}/metrics.json, last.npz, best.npz, curves.png, kernels.png")
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


def save_plots(out_dir, history, model) -> None:
    """curves.png and kernels.png in ``out_dir``.

    Drawn on matplotlib Figure objects with the Agg canvas, not pyplot, so that a run
    started from a notebook does not change the notebook's plotting backend. Without
    matplotlib: no plots, and a one-time note on stderr (the checkpoints and
    metrics.json are written either way).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        if not _plot_warned:
            _plot_warned.append(True)
            print(f"note: no plots ({e}); install matplotlib (pip install matplotlib) "
                  f"for curves.png and kernels.png", file=sys.stderr)
        return
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
        fig.savefig(os.path.join(out_dir, "curves.png"), dpi=100)
    grid = kernel_grid(to_numpy(model.params["conv1.w"]))
    fig = Figure(figsize=(max(2.0, grid.shape[1] / 12), max(2.0, grid.shape[0] / 12)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
    ax.set_axis_off()
    fig.savefig(os.path.join(out_dir, "kernels.png"), dpi=100)


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
