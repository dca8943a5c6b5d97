"""Train AlexNet with the paper's recipe (Section 5) on a small real dataset.

    python train.py                                   # Fashion-MNIST, `mini` preset, CPU
    python train.py --dataset fashion-mnist-subset --model tiny --epochs 3
    python train.py --dataset cifar10 --device cuda
    python train.py --dataset folder:/path/to/photos --model paper
    python train.py --eval-only runs/fashion-mnist-mini/best.npz

The recipe: SGD with batch 128, momentum 0.9, weight decay 5e-4, learning rate 0.01
divided by 10 when the validation error stops improving (at most three times). The
validation set is held out of the training set; the test set is used only for the
final report, as top-1 and top-5 error on the centre crop and on ten crops.

Everything goes into --out: metrics.json, last.npz and best.npz checkpoints,
curves.png and kernels.png (the first-layer kernels, the paper's Figure 3).
Ctrl-C saves a checkpoint that --resume continues from.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time

import numpy as np

from alexnet import PRESETS, AlexNet, atomic_savez
from engine.backend import (GPUUnavailableError, check_device, get_array_module, gpu_routes,
                            gpu_status, to_device, to_numpy)
from engine.environment import environment
from engine.metrics import class_errors, hardest_classes, topk_correct
from engine.optim import cosine_lr, sgd_for
from engine.progress import ProgressBar
from layers.loss import softmax, softmax_cross_entropy

DATASETS = ("fashion-mnist", "fashion-mnist-subset", "mnist", "cifar10", "cifar100")

# How each dataset is cropped: training uses random `crop` x `crop` patches of the image
# zero-padded by `pad` (the small-scale analog of the paper's random 227 patches of
# 256 x 256 images); testing uses the centre (the unpadded image) or ten crops.
DATA_DEFAULTS = {
    "fashion-mnist": dict(pad=2, crop=28, flip=True),
    "fashion-mnist-subset": dict(pad=2, crop=28, flip=True),
    "mnist": dict(pad=2, crop=28, flip=False),   # a mirrored digit is another digit
    "cifar10": dict(pad=4, crop=32, flip=True),
    "cifar100": dict(pad=4, crop=32, flip=True),
    "folder": dict(pad=0, crop=227, flip=True),  # 256 x 256 images, the paper's 227 crops
}


def test_prep(kind, args, mean, crop) -> dict:
    """How a network is tested: its mean image, the dataset's padding, its crop, and
    whether the test crops include mirrors: only where it was trained on them (a
    mirrored digit is another digit; a net trained with --no-flip never saw one)."""
    dflt = DATA_DEFAULTS.get(kind, DATA_DEFAULTS["folder"])
    return dict(mean=mean, pad=dflt["pad"], crop=crop, scale=pixel_scale(args),
                mirrors=bool(dflt["flip"] and not args.get("no_flip")))


def pixel_scale(args) -> float:
    """What a uint8 pixel is multiplied by before the mean image is subtracted: 1/255
    (pixels in [0, 1], this project's default), or 1 with --raw-pixels (0 to 255, the
    paper's units: its N(0, 0.01) weights, biases of 1 and LRN constants were chosen
    for them)."""
    return 1.0 if args.get("raw_pixels") else 1.0 / 255.0


def crops_name(prep) -> str:
    return "ten crops" if prep.get("mirrors", True) else "five crops (no mirrors)"


class TrainingError(RuntimeError):
    """A run that cannot go on (NaN loss, bad checkpoint): reported in one line."""


class DivergedError(TrainingError):
    """The loss became NaN or infinite (usually a learning rate too large): exit code 3,
    so that a learning-rate sweep can tell it from other failures."""


# Points per epoch of the training-error curve kept in each history entry: the error of
# the batches since the previous point (the epoch's average lags by half an epoch, and
# "how many steps to 25% training error" needs finer steps than one epoch).
CURVE_POINTS = 10

# Steps whose loss and accuracy wait on the device before the host reads them, on a GPU.
# Reading a GPU value makes the host wait until the GPU has computed it: read every
# step (the loss after the forward, the accuracy after the update), the host could not
# queue the next step's work while the GPU runs this one, and the two would take turns
# instead of working at once. So on a GPU they are read in a batch every few steps,
# and always before anything that needs them (a point of the curve is computed from
# them in order; a checkpoint is saved only after a read, so a loss that became NaN
# in between stops the run before it saves). On the CPU there is nothing to wait for:
# every step.
GPU_READ_EVERY = 16


def read_interval(device: str) -> int:
    """Steps between two reads of the training loss and accuracy (GPU_READ_EVERY)."""
    return 1 if device == "cpu" else GPU_READ_EVERY


# ---------------------------------------------------------------------------- arguments

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train AlexNet (Krizhevsky et al. 2012) with the paper's recipe on a small "
                    "real dataset, CPU (NumPy) or GPU (CuPy).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist, fashion-mnist-subset (bundled, offline), mnist, cifar10, "
                        "cifar100, or folder:PATH (one sub-folder per class, JPEG/PNG)")
    d.add_argument("--data-dir", default=None,
                   help="folder holding the dataset files (else $ALEXNET_DATA, the cache folder, "
                        "and for Fashion-MNIST /usr/share/datasets/fashion-mnist are searched, "
                        "then the files are downloaded and checksummed)")
    d.add_argument("--no-download", action="store_true",
                   help="never download; fail if the files are not found locally")
    d.add_argument("--no-fallback", action="store_true",
                   help="fail, rather than train on the bundled 5,000-image subset, when "
                        "Fashion-MNIST is neither found nor downloadable (the experiments "
                        "and the headline scripts set it: a result must be on the data it "
                        "names)")
    d.add_argument("--train-limit", type=int, default=None, metavar="N",
                   help="use only the first N training images (quick runs)")
    d.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of the training set held out for validation (LR schedule, "
                        "best checkpoint); the test set is only used for the final report. "
                        "0: train on every training image (no validation split); needs a "
                        "fixed schedule (--lr-drops), and the last epoch is the one tested")
    d.add_argument("--no-crop", action="store_true",
                   help="turn off random-crop augmentation (train on the centre crop; "
                        "then judge the net by the centre-crop test error: ten crops show "
                        "it shifted images it never saw)")
    d.add_argument("--no-flip", action="store_true",
                   help="turn off random horizontal reflections")
    d.add_argument("--no-pca", action="store_true",
                   help="turn off PCA colour augmentation (only applies to RGB data)")
    d.add_argument("--erase", type=float, default=0.0, metavar="P",
                   help="random erasing (Zhong et al. 2020; not in the AlexNet paper): with "
                        "probability P a random rectangle of each training image is set to "
                        "the mean")
    d.add_argument("--raw-pixels", action="store_true",
                   help="feed pixel values 0-255 minus the mean image, as the paper did, "
                        "instead of 0-1 minus the mean (the paper's initialization and LRN "
                        "constants were chosen for those units)")
    d.add_argument("--ten-crop", dest="ten_crop", action="store_true", default=True,
                   help="evaluate on ten crops too, as by default (corners, centre, "
                        "mirrors; softmax averaged); a net trained without reflections "
                        "(mnist, --no-flip) gets the five without mirrors")
    d.add_argument("--no-ten-crop", dest="ten_crop", action="store_false",
                   help="evaluate on the centre crop only")
    d.add_argument("--no-prefetch", action="store_true",
                   help="prepare batches in the main thread instead of in the background")

    m = p.add_argument_group("model")
    m.add_argument("--model", default="mini", choices=sorted(PRESETS),
                   help="AlexNet preset: paper (3x227x227), mini (28-32 px), tiny (fast)")
    m.add_argument("--groups", type=int, default=None,
                   help="groups of conv2/4/5 (2 = the paper's two-GPU split); default: preset's")
    m.add_argument("--init", default="paper", choices=["paper", "he", "caffe"],
                   help="paper: N(0, 0.01) weights, biases 1 in conv2,4,5 and fc6,7; "
                        "caffe: as Caffe's bvlc_alexnet, those biases 0.1 and fc6,7 "
                        "weights N(0, 0.005); he: He-scaled weights, those biases 0.1")
    m.add_argument("--activation", default="relu", choices=["relu", "tanh"])
    m.add_argument("--no-lrn", action="store_true", help="drop local response normalization")
    m.add_argument("--pool", default="3,2", help="max-pool size,stride (3,2 overlapping as the "
                                                 "paper; 2,2 non-overlapping)")
    m.add_argument("--dropout", type=float, default=0.5, help="dropout probability in fc6, fc7")
    m.add_argument("--width", type=float, default=1.0,
                   help="multiply every conv layer's kernel count (0.5: the paper's one-column "
                        "comparison net with half the kernels)")

    o = p.add_argument_group("optimization (the paper's recipe by default)")
    o.add_argument("--epochs", type=int, default=30)
    o.add_argument("--batch-size", type=int, default=128)
    o.add_argument("--lr", type=float, default=0.01)
    o.add_argument("--momentum", type=float, default=0.9)
    o.add_argument("--weight-decay", type=float, default=5e-4)
    o.add_argument("--lr-patience", type=int, default=2,
                   help="divide the LR by 10 after this many epochs without a new best "
                        "validation error")
    o.add_argument("--max-lr-drops", type=int, default=3,
                   help="the paper divided the LR by 10 three times before the end")
    o.add_argument("--lr-drops", default=None, metavar="FRACTIONS",
                   help="a fixed schedule instead of the validation-driven one: divide the LR "
                        "by 10 once these fractions of the epochs are done, e.g. 0.5,0.7 "
                        "(with --epochs 40: after epochs 20 and 28). With --time-limit, the "
                        "epochs are those that fit in it (estimated from the epochs' time), "
                        "so the drops come in time. 'none': no fixed drops (to undo the "
                        "flag given earlier on the same command line)")
    o.add_argument("--cosine", action=argparse.BooleanOptionalAction, default=False,
                   help="cosine annealing instead of the drops (Loshchilov & Hutter 2017; "
                        "not in the AlexNet paper): epoch e of E trains at "
                        "lr (1 + cos(pi (e-1) / E)) / 2, from --lr down towards 0. With "
                        "--time-limit, E is the epochs that fit (estimated from the "
                        "epochs' time); on --resume with other --epochs, the curve "
                        "stretches from the resumed epoch on. --no-cosine undoes it")
    o.add_argument("--swa", type=float, default=None, metavar="FRACTION",
                   help="stochastic weight averaging (Izmailov et al. 2018): also keep the "
                        "mean of the weights at the end of every epoch after this fraction "
                        "of the epochs (with --time-limit, of those that fit), and test it "
                        "beside the best checkpoint (swa.npz; metrics.json 'swa')")
    o.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS",
                   help="label smoothing (Szegedy et al. 2016; not in the AlexNet paper): "
                        "train towards 1 - EPS on the true class and EPS/K spread over all "
                        "K classes instead of the one-hot target; the reported training "
                        "loss is that smoothed loss (never below the target's entropy, "
                        "0.50 for EPS 0.1 and 10 classes), the validation and test loss "
                        "the plain one")
    o.add_argument("--seed", type=int, default=0,
                   help="seeds weights, the validation split, shuffling, augmentation, dropout")

    r = p.add_argument_group("run")
    r.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    r.add_argument("--out", default=None, help="output folder (default runs/DATASET-MODEL)")
    r.add_argument("--resume", default=None, metavar="PATH",
                   help="continue from a checkpoint (last.npz) written by an earlier run")
    r.add_argument("--eval-only", default=None, metavar="CHECKPOINT",
                   help="evaluate a checkpoint on the test set and exit, without training")
    r.add_argument("--predict", nargs="+", default=None, metavar="IMAGE",
                   help="with --eval-only CHECKPOINT: classify these image files (JPEG, "
                        "PNG, ...) instead of testing, printing each one's most probable "
                        "classes; each is prepared as the network's training images were "
                        "(grey or colour, the shorter side scaled, the centre cropped)")
    r.add_argument("--invert", action="store_true",
                   help="with --predict: invert the images' brightness first (Fashion-MNIST "
                        "and MNIST are light on black; a photo is mostly dark on light)")
    r.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="train for at most this long (this invocation; the test afterwards "
                        "not counted): no epoch is started that would end after it, judged "
                        "by the last epoch's time, and a step past it stops the epoch. The "
                        "best checkpoint is then tested as usual; --resume last.npz goes on")
    r.add_argument("--eval-batch-size", type=int, default=256)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse_pool(text: str):
    try:
        size, stride = (int(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"--pool must be 'size,stride' such as 3,2; got {text!r}") from None
    return size, stride


def parse_fractions(text):
    """'0.5,0.7' -> [0.5, 0.7]: increasing fractions in (0, 1); None or 'none' -> []."""
    if text is None or str(text).strip().lower() == "none":
        return []
    try:
        fr = [float(t) for t in str(text).split(",")]
    except ValueError:
        fr = None
    if not fr or any(not 0 < f < 1 for f in fr) or fr != sorted(set(fr)):
        raise ValueError(f"--lr-drops must be increasing fractions of the epochs between 0 "
                         f"and 1, such as 0.5,0.7; got {text!r}")
    return fr


def validate_args(a):
    for k in ("val_fraction", "erase", "dropout", "width", "lr", "momentum", "weight_decay",
              "swa", "time_limit", "label_smoothing"):
        v = getattr(a, k)
        if v is not None and not math.isfinite(v):
            raise ValueError(f"--{k.replace('_', '-')} must be a finite number, got {v}")
    if not (a.dataset in DATASETS or a.dataset.startswith("folder:")):
        raise ValueError(f"--dataset: unknown dataset {a.dataset!r}; choose one of "
                         f"{', '.join(DATASETS)} or folder:PATH")
    for flag, v in (("--epochs", a.epochs), ("--batch-size", a.batch_size),
                    ("--eval-batch-size", a.eval_batch_size)):
        if v < 1:
            raise ValueError(f"{flag} must be >= 1, got {v}")
    if a.train_limit is not None and a.train_limit < 2:
        raise ValueError(f"--train-limit must be >= 2, got {a.train_limit}")
    if not 0 <= a.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {a.val_fraction}")
    if a.lr <= 0:
        raise ValueError(f"--lr must be positive, got {a.lr}")
    if a.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {a.seed}")
    if a.lr_patience < 1:
        raise ValueError(f"--lr-patience must be >= 1 epoch, got {a.lr_patience}")
    if a.max_lr_drops < 0:
        raise ValueError(f"--max-lr-drops must be >= 0, got {a.max_lr_drops}")
    if a.groups is not None and a.groups < 1:
        raise ValueError(f"--groups must be >= 1, got {a.groups}")
    if a.time_limit is not None and not a.time_limit > 0:
        raise ValueError(f"--time-limit must be a positive number of seconds, got {a.time_limit}")
    if not a.width > 0:
        raise ValueError(f"--width must be positive, got {a.width}")
    if not 0 <= a.erase <= 1:
        raise ValueError(f"--erase must be a probability in [0, 1], got {a.erase}")
    if not 0 <= a.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {a.dropout}")
    if not 0 <= a.label_smoothing < 1:
        raise ValueError(f"--label-smoothing must be in [0, 1), got {a.label_smoothing}")
    if a.swa is not None and not 0 <= a.swa < 1:
        raise ValueError(f"--swa must be a fraction of the epochs in [0, 1), got {a.swa}")
    a.pool_tuple = parse_pool(a.pool)
    if min(a.pool_tuple) < 1:
        raise ValueError(f"--pool: size and stride must be >= 1, got {a.pool!r}")
    a.lr_drop_fractions = parse_fractions(a.lr_drops)
    if a.cosine and a.lr_drop_fractions:
        raise ValueError(f"--cosine and --lr-drops {a.lr_drops}: two schedules for the "
                         f"learning rate; give one")
    if a.val_fraction == 0 and not (a.lr_drop_fractions or a.cosine) and not a.eval_only:
        raise ValueError("--val-fraction 0 leaves no validation set, and the default "
                         "schedule divides the learning rate when the validation error "
                         "stops improving: add a fixed schedule, e.g. --lr-drops 0.5,0.7 "
                         "or --cosine")
    if a.data_dir is not None:     # --data-dir=~/x reaches us unexpanded
        a.data_dir = os.path.expanduser(a.data_dir)
    if a.data_dir is not None and not os.path.isdir(a.data_dir):
        raise FileNotFoundError(f"--data-dir: folder {a.data_dir!r} does not exist")
    for flag, path in (("--resume", a.resume), ("--eval-only", a.eval_only)):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"{flag}: checkpoint {path!r} does not exist")


# ---------------------------------------------------------------------------- data

def dataset_kind(name: str) -> str:
    return "folder" if name.startswith("folder:") else name


def load_data(a):
    from data.datasets import load_dataset, load_image_folder

    if a.dataset.startswith("folder:"):
        ds = load_image_folder(a.dataset[len("folder:"):])
    else:
        # never the bundled subset in place of the data a checkpoint was trained or is
        # to be tested on: a resumed run would go on training on other images
        ds = load_dataset(a.dataset, data_dir=a.data_dir, download=not a.no_download,
                          fallback=not (a.no_fallback or getattr(a, "resume", None)
                                        or getattr(a, "eval_only", None)))
    return ds


def split_train_val(x, y, val_fraction, seed, limit=None):
    """Deterministic hold-out: shuffle indices with the seed, last part is validation.
    val_fraction 0: every image trains, and the validation set is empty."""
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if val_fraction == 0:
        return x, y, x[:0], y[:0]
    n = len(x)
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise ValueError(f"--val-fraction {val_fraction} leaves no training images out of {n}")
    perm = np.random.default_rng([seed, 12345]).permutation(n)
    tr, va = np.sort(perm[: n - n_val]), np.sort(perm[n - n_val:])
    return x[tr], y[tr], x[va], y[va]


# ---------------------------------------------------------------------------- evaluation

def evaluate(model, x_u8, y, prep, batch_size, device, ten_crop=False, confusion=False):
    """Top-1 and top-5 error on the centre crop (and on ten crops if asked), and the
    mean loss on the centre crop. Returns a dict of floats; with ``confusion``, also
    each mode's confusion matrix (``confusion``, ``tencrop_confusion``: rows the true
    class, columns the predicted one, as an int array)."""
    from data.loader import iterate_eval
    from engine.metrics import confusion_matrix

    num_classes = model.config["num_classes"]
    k5 = min(5, num_classes)
    out = {}
    modes = ["center"] + (["ten"] if ten_crop else [])
    for mode in modes:
        c1 = c5 = 0
        loss_sum = 0.0
        conf = np.zeros((num_classes, num_classes), np.int64)
        for xb, yb in iterate_eval(x_u8, y, batch_size, mode=mode, device=device, **prep):
            if mode == "ten":
                # (10, N, C, H, W): average the ten softmax outputs, as the paper did
                # (five, without the mirrors, for a net trained without them)
                probs = None
                for crop in xb:
                    p = softmax(model.forward(crop, train=False))
                    probs = p if probs is None else probs + p
                scores = probs / len(xb)
            else:
                logits = model.forward(xb, train=False)
                scores = logits
                loss, _ = softmax_cross_entropy(logits, yb, check_labels=False)
                loss_sum += float(loss) * len(yb)
            c1 += int(topk_correct(scores, yb, 1).sum())
            c5 += int(topk_correct(scores, yb, k5).sum())
            if confusion:
                conf += confusion_matrix(scores.argmax(axis=1), yb, num_classes)
        n = len(y)
        tag = "" if mode == "center" else "tencrop_"
        if confusion:
            out[f"{tag}confusion"] = conf
        out[f"{tag}top1_error"] = 1 - c1 / n
        out[f"{tag}top5_error"] = 1 - c5 / n
        if mode == "ten":
            out["tencrop_crops"] = 10 if prep.get("mirrors", True) else 5
        if mode == "center":
            out["loss"] = loss_sum / n
            if not math.isfinite(loss_sum):
                # an update after the last finite training loss can still leave NaN or
                # inf weights; caught here, before such a net is saved or scored
                raise DivergedError(
                    f"the network's outputs are not finite (loss {loss_sum}) on {n} "
                    f"evaluation images: its weights hold NaN or inf. Checkpoints written "
                    f"before this point are unaffected; try a smaller --lr or --init he.")
    return out


# ---------------------------------------------------------------------------- checkpoints

def save_checkpoint(path, model, opt, state, prep, swa=None):
    """``swa``: the running mean of the weights (--swa), kept in last.npz as swa/NAME so
    that --resume goes on averaging. ``opt`` None: the weights only, without momentum
    (marked ``weights_only``, as save_weights_only writes them)."""
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    if swa:
        arrays.update({f"swa/{k}": to_numpy(v) for k, v in swa.items()})
    if opt is None:
        arrays["weights_only"] = np.array(True)
    else:
        arrays.update({f"velocity/{k}": to_numpy(v) for k, v in opt.velocity.items()})
    arrays["mean"] = np.asarray(prep["mean"])
    if prep.get("classes") is not None:        # the class names, for --predict
        arrays["classes"] = np.array(json.dumps(list(prep["classes"])))
    if prep.get("pca") is not None:
        arrays["pca_eigvals"] = np.asarray(prep["pca"][0])
        arrays["pca_eigvecs"] = np.asarray(prep["pca"][1])
    arrays["config"] = np.array(json.dumps(model.config))
    arrays["extra_state"] = np.array(json.dumps(model.extra_state()))
    arrays["train_state"] = np.array(json.dumps(state))
    atomic_savez(path, arrays)


def save_weights_only(src, dst):
    """Write checkpoint ``src`` without its momentum buffers (velocity/*), to ``dst``.

    Half the size (18 MB for ``mini`` instead of 36), for carrying trained networks off
    a machine that gives back little: evaluation (--eval-only, python -m experiments
    ensemble) needs only the weights, the mean image and the config. The file is marked
    ``weights_only``, and --resume refuses it: resuming with the momentum reset would
    silently change the run. Returns the names of the arrays written.
    """
    load_checkpoint(src)                       # a readable train.py checkpoint, or say so
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if not k.startswith(("velocity/", "swa/"))}
    arrays["weights_only"] = np.array(True)
    atomic_savez(dst, arrays)
    return sorted(arrays)


def load_checkpoint(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            ck = {k: f[k] for k in f.files}
        ck["config"] = json.loads(str(ck["config"]))
        ck["train_state"] = json.loads(str(ck["train_state"]))
        ck["extra_state"] = json.loads(str(ck.get("extra_state", np.array("{}"))))
        if "classes" in ck:
            ck["classes"] = json.loads(str(ck["classes"]))
    except Exception as e:
        raise TrainingError(f"checkpoint {path!r} is not a readable train.py checkpoint ({e})") \
            from e
    return ck


# ---------------------------------------------------------------------------- plots

_plot_warned = []       # save_plots has said that matplotlib is missing


def save_plots(out_dir, history, model, smoothing=0.0):
    """curves.png (loss and error per epoch) and kernels.png (conv1, the paper's Fig. 3).
    ``smoothing``: the run's label smoothing, named on the training loss's curve (that
    loss is the smoothed one, never below the target's entropy; validation's is plain).

    Drawn on matplotlib Figure objects with the Agg canvas, not pyplot, so that calling
    train.main() from a notebook does not change the notebook's plotting backend.
    Without matplotlib: no plots, and a one-time note on stderr.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        # matplotlib is a declared dependency, but a run started from another Python
        # (not the project's .venv) may lack it: an hour of training must not end on
        # a missing plotting library. Say so once; the checkpoints and metrics.json
        # are written either way.
        if not _plot_warned:
            _plot_warned.append(True)
            print(f"note: no plots ({e}); install matplotlib (pip install matplotlib) "
                  f"for curves.png and kernels.png", file=sys.stderr)
        return
    if history:
        ep = [h["epoch"] for h in history]
        fig = Figure(figsize=(10, 3.8))
        FigureCanvasAgg(fig)
        ax1, ax2 = fig.subplots(1, 2)
        validated = all(h["val_loss"] is not None for h in history)  # not --val-fraction 0
        ax1.plot(ep, [h["train_loss"] for h in history], "o-",
                 label=f"train (label smoothing {smoothing:g})" if smoothing else "train")
        if validated:
            ax1.plot(ep, [h["val_loss"] for h in history], "o-", label="validation")
        ax1.set_xlabel("epoch"), ax1.set_ylabel("cross-entropy"), ax1.legend()
        ax2.plot(ep, [100 * h["train_top1_error"] for h in history], "o-", label="train")
        if validated:
            ax2.plot(ep, [100 * h["val_top1_error"] for h in history], "o-",
                     label="validation")
        ax2.set_xlabel("epoch"), ax2.set_ylabel("top-1 error (%)"), ax2.legend()
        for prev, h in zip(history, history[1:]):
            if h["lr"] < prev["lr"] / 5:       # mark each drop by 10 (not --cosine's steps)
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


# ---------------------------------------------------------------------------- training

class StopRequest:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a request to stop after the
    current step, so the checkpoint written then is consistent (never a half-applied
    SGD update). A second Ctrl-C interrupts at once, as usual. With a ``deadline``
    (``time.monotonic()`` seconds), passing it is a request to stop too."""

    def __init__(self, deadline: float | None = None):
        self.signalled = False
        self.deadline = deadline
        self._old = {}

    @property
    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    @property
    def requested(self) -> bool:
        return self.signalled or self.timed_out

    def _handler(self, signum, frame):
        if self.signalled:
            raise KeyboardInterrupt
        self.signalled = True
        print("\nstopping after this step and saving a checkpoint "
              "(press Ctrl-C again to abort at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (e.g. called from a notebook thread)
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def saved_args(a) -> dict:
    """The run's settings as stored in checkpoints (so --resume needs no other flag)."""
    return {k: v for k, v in vars(a).items() if k not in ("pool_tuple", "lr_drop_fractions")}


# Settings that belong to the invocation, not to the run: never taken from a checkpoint.
PER_INVOCATION = ("resume", "eval_only", "device", "out", "quiet", "no_prefetch",
                  "eval_batch_size", "time_limit", "predict", "invert")


def explicit_flags(parser, argv) -> set:
    """Which options were given on the command line (as opposed to defaults)."""
    import copy

    p = copy.deepcopy(parser)
    for action in p._actions:
        action.default = argparse.SUPPRESS
    ns, _ = p.parse_known_args(argv)
    return set(vars(ns))


# Settings that make the run what it is: the network (rebuilt from the checkpoint), the
# data split and the shuffling (from the seed), the step size in images, the PCA, the
# learning rate (taken from the checkpoint's state) and the loss (--label-smoothing: the
# history's training losses would mix two losses). Given again with another value, a
# resumed run would ignore them or become a different run, so that is an error.
# (--epochs, the schedule, --swa, the augmentation switches and the like may change.)
FIXED_ON_RESUME = ("dataset", "model", "groups", "init", "activation", "no_lrn", "pool",
                   "dropout", "width", "seed", "val_fraction", "train_limit",
                   "batch_size", "no_pca", "lr", "raw_pixels", "label_smoothing")
# With --eval-only, the network's settings are the checkpoint's (the dataset may differ).
FIXED_ON_EVAL = ("model", "groups", "init", "activation", "no_lrn", "pool", "dropout",
                 "width", "raw_pixels")


def apply_checkpoint_args(a, path, explicit, parser):
    """Take the run's settings from the checkpoint at ``path``, except flags given
    explicitly now (e.g. --epochs to train longer) and per-invocation ones. A flag
    given now that would change what the checkpoint fixes (FIXED_ON_RESUME, or
    FIXED_ON_EVAL for --eval-only) is an error that names it."""
    saved = load_checkpoint(path)["train_state"].get("args", {})
    fixed = FIXED_ON_EVAL if a.eval_only else FIXED_ON_RESUME
    # a setting the checkpoint lacks (a flag added since it was written) had its default
    had = {k: saved.get(k, parser.get_default(k)) for k in fixed}
    clash = [k for k in fixed if k in explicit and getattr(a, k) != had[k]]
    if clash:
        said = ", ".join(f"--{k.replace('_', '-')} {getattr(a, k)!r} (the checkpoint's: "
                         f"{had[k]!r})" for k in clash)
        how = ("--eval-only tests the network as it was trained" if a.eval_only else
               "a resumed run keeps its network, data split, batch size, learning rate "
               "and loss")
        raise ValueError(f"{'--eval-only' if a.eval_only else '--resume'} {path}: {said}: "
                         f"{how}; drop the flag, or start a new run without --resume")
    for k, v in saved.items():
        if k not in explicit and k not in PER_INVOCATION and hasattr(a, k):
            if k == "data_dir" and v is not None and not os.path.isdir(v):
                # saved as given, perhaps relative to another folder or machine: search
                # the usual places instead (the dataset is checked wherever it is found)
                if not a.predict:
                    print(f"note: the checkpoint's --data-dir {v!r} is not a folder here; "
                          f"looking for the data in the usual places", file=sys.stderr)
                continue
            setattr(a, k, v)
    # one schedule given now replaces the checkpoint's other one
    if "cosine" in explicit and a.cosine and "lr_drops" not in explicit:
        a.lr_drops = None
    if "lr_drops" in explicit and a.lr_drops is not None and "cosine" not in explicit:
        a.cosine = False


def schedule_text(a) -> str:
    """The learning-rate schedule of a run, in words, for the line that starts it."""
    over = (f"the epochs that fit in {a.time_limit:g} s (at most {a.epochs})"
            if a.time_limit is not None else f"{a.epochs} epoch{'s' * (a.epochs != 1)}")
    if a.cosine:
        return f"lr {a.lr:g} falling on a cosine towards 0 over {over} (--cosine)"
    if a.lr_drop_fractions:
        at = ", ".join(f"{100 * f:g}%" for f in a.lr_drop_fractions)
        return f"lr {a.lr:g}, divided by 10 after {at} of {over} (--lr-drops)"
    if a.max_lr_drops == 0:
        return f"lr {a.lr:g} throughout (--max-lr-drops 0)"
    return (f"lr {a.lr:g}, divided by 10 after {a.lr_patience} epochs without a new best "
            f"validation error, at most {a.max_lr_drops} times")


def drop_lr(state, opt, why: str):
    """Divide the learning rate by 10 (the paper's only change to it), and say why."""
    state["lr"] /= 10
    state["lr_drops"] += 1
    opt.lr = state["lr"]
    print(f"{why}: learning rate divided by 10, now {state['lr']:g}")


def tf32_on() -> bool:
    """Whether CuPy's float32 matrix products use TF32 on the tensor cores (CUPY_TF32)."""
    return os.environ.get("CUPY_TF32", "0") not in ("", "0")


def average_weights(swa, model, state):
    """Stochastic weight averaging: fold the weights as they are now into their running
    mean ``swa`` (name -> array on the model's device, empty before the first epoch
    averaged), in place. Plain SGD weights: AlexNet has no batch statistics to
    recompute afterwards, so the mean is a network as it stands."""
    n = state["swa_count"]
    for k, w in model.params.items():
        if n == 0:
            swa[k] = w.copy()
        else:
            swa[k] += (w - swa[k]) * w.dtype.type(1.0 / (n + 1))
    if n == 0:
        state["swa_start"] = state["epoch"]
    state["swa_count"] = n + 1


def run_epoch(a, model, opt, loader, state, stop, va_x, va_y, prep, device, out_dir,
              last_path, best_path, ck_prep, planned_epochs=None, swa=None):
    """One epoch (or the rest of one, when resuming mid-epoch), then validation,
    the learning-rate schedule, the weight average (--swa) and the checkpoints."""
    epoch = state["epoch"] + 1
    start = state["step"]
    began = time.monotonic()           # the clock of --time-limit
    part = state["partial"] or dict(seen=0, correct=0, loss_sum=0.0, seconds=0.0)
    part.setdefault("curve", [])       # [fraction of the epoch's images, error] pairs
    part.setdefault("win", [0, 0])             # images and errors since the last point
    n_batches = len(loader)
    every = max(1, n_batches // CURVE_POINTS)
    epoch_images = min(len(loader.x), n_batches * loader.batch_size)
    bar = ProgressBar(n_batches, desc=f"epoch {epoch}/{a.epochs}",
                      enabled=None if not a.quiet else False)
    pending = []               # (step, images, loss, correct), maybe still on the device
    read_every = read_interval(device)

    def read_pending():
        """Bring the pending steps' loss and accuracy to the host (one wait for the
        device) and account for them in order, as if read at each step."""
        if not pending:
            return
        xp = get_array_module(pending[0][2])
        losses = to_numpy(xp.stack([p[2] for p in pending])).tolist()
        corrects = to_numpy(xp.stack([p[3] for p in pending])).tolist()
        steps = [(p[0], p[1]) for p in pending]
        pending.clear()
        for (step, n), lv, ok in zip(steps, losses, corrects):
            if not math.isfinite(lv):
                raise DivergedError(
                    f"the loss became {lv} at epoch {epoch}, step {step} (lr "
                    f"{state['lr']:g}); stopped without saving. "
                    + (f"The last good checkpoint is {last_path}. "
                       if os.path.isfile(last_path) else "")
                    + "Try a smaller --lr" + (" or --init he." if a.init != "he" else
                                              " or 0-1 pixels (no --raw-pixels)."
                                              if a.raw_pixels else "."))
            part["seen"] += n
            part["loss_sum"] += lv * n
            part["correct"] += int(ok)
            part["win"][0] += n
            part["win"][1] += n - int(ok)
            if step % every == 0 or step == n_batches:
                part["curve"].append([round(part["seen"] / epoch_images, 4),
                                      part["win"][1] / part["win"][0]])
                part["win"] = [0, 0]

    t0 = time.perf_counter()
    i = start
    for xb, yb in loader.iterate(epoch, start=start):
        logits = model.forward(xb, train=True)
        loss, dlogits = softmax_cross_entropy(logits, yb, check_labels=False,
                                              smoothing=a.label_smoothing)
        pending.append((i + 1, len(yb), loss, topk_correct(logits, yb, 1).sum()))
        if len(pending) >= read_every or i + 1 == n_batches:
            read_pending()        # before the update: a NaN loss stops the run here
        model.backward(dlogits)
        opt.step(model.grads)
        i += 1
        if part["seen"]:
            rate = part["seen"] / (part["seconds"] + time.perf_counter() - t0)
            bar.update(i, loss=f"{part['loss_sum'] / part['seen']:.4f}",
                       err=f"{100 * (1 - part['correct'] / part['seen']):.2f}%",
                       **{"img/s": f"{rate:.0f}"})
        if stop.requested and i < n_batches:
            read_pending()                 # the checkpoint counts every step it holds
            part["seconds"] += time.perf_counter() - t0
            state.update(step=i, partial=part)
            save_checkpoint(last_path, model, opt, state, ck_prep, swa)
            return
    part["seconds"] += time.perf_counter() - t0
    # no validation set (--val-fraction 0): no validation numbers, and every epoch is
    # the newest "best", so best.npz is the last epoch
    val = (evaluate(model, va_x, va_y, prep, a.eval_batch_size, device) if len(va_y)
           else dict(loss=None, top1_error=None, top5_error=None))
    if not len(va_y):      # no validation pass to find non-finite outputs: the weights
        bad = [k for k, w in model.params.items()
               if not bool(get_array_module(w).isfinite(w).all())]
        if bad:
            raise DivergedError(f"the weights became non-finite in epoch {epoch} (first: "
                                f"{bad[0]}; lr {state['lr']:g}); stopped without saving "
                                f"this epoch. Try a smaller --lr.")
    entry = dict(epoch=epoch, train_loss=part["loss_sum"] / part["seen"],
                 train_top1_error=1 - part["correct"] / part["seen"], val_loss=val["loss"],
                 val_top1_error=val["top1_error"], val_top5_error=val["top5_error"],
                 lr=state["lr"], seconds=part["seconds"],
                 images_per_second=part["seen"] / part["seconds"], train_curve=part["curve"])
    if start == 0:       # a whole epoch: its time with validation, for a resumed run's plan
        entry["wall_seconds"] = time.monotonic() - began
    state["history"].append(entry)
    state.update(epoch=epoch, step=0, partial=None)
    shown = dict(loss=f"{entry['train_loss']:.4f}", err=f"{100 * entry['train_top1_error']:.2f}%")
    if val["top1_error"] is not None:
        shown["val_err"] = f"{100 * val['top1_error']:.2f}%"
    line = bar.close(**shown, lr=f"{state['lr']:g}",
                     **{"img/s": f"{entry['images_per_second']:.0f}"})
    if not bar.live:
        print(line, flush=True)
    improved = (val["top1_error"] is None or state["best_val"] is None
                or val["top1_error"] < state["best_val"])
    if improved:
        state.update(best_val=val["top1_error"], best_epoch=epoch, since_best=0)
    planned = planned_epochs() if planned_epochs else a.epochs
    # the weights of this epoch join the average once FRACTION of the epochs are done
    # before it (and, once it started, every epoch does)
    if swa is not None and (state["swa_count"] or epoch > a.swa * planned + 1e-9):
        average_weights(swa, model, state)
    if a.cosine:                       # the next epoch's rate on the cosine of the plan
        if epoch < planned:            # (after the last planned one the rate stays)
            state["lr"] = cosine_lr(a.lr, epoch, planned)
            opt.lr = state["lr"]
    elif a.lr_drop_fractions:          # the fixed schedule: drops at fractions of the epochs
        due = sum(epoch >= f * planned - 1e-9 for f in a.lr_drop_fractions)
        while state["lr_drops"] < due:
            drop_lr(state, opt, f"{epoch} of {planned} epochs done")
    elif not improved:
        state["since_best"] += 1
        if state["since_best"] >= a.lr_patience and state["lr_drops"] < a.max_lr_drops:
            state["since_best"] = 0
            drop_lr(state, opt, f"validation error has not improved for {a.lr_patience} "
                                f"epochs")
    save_checkpoint(last_path, model, opt, state, ck_prep, swa)
    if improved:
        save_checkpoint(best_path, model, opt, state, ck_prep)
    save_plots(out_dir, state["history"], model, a.label_smoothing)


def train(a) -> dict:
    from data.augment import lighting_pca, mean_image
    from data.loader import BatchLoader

    device = check_device(a.device)
    resume = load_checkpoint(a.resume) if a.resume else None
    if resume is not None and "weights_only" in resume:
        raise TrainingError(f"--resume {a.resume}: this file holds the weights only, without "
                            f"the momentum a run continues with (python -m experiments "
                            f"weights wrote it); evaluate it with --eval-only or python -m "
                            f"experiments ensemble, or resume from the run's last.npz")
    ds = load_data(a)
    if len(ds.test_y) == 0:
        raise ValueError(f"{ds.name}: the test set is empty, so the run could not be "
                         f"tested at its end ({ds.source})")
    kind = dataset_kind(a.dataset)
    dflt = DATA_DEFAULTS[kind]
    print(f"data: {ds.name} from {ds.source}: {len(ds.train_x)} train / {len(ds.test_x)} test "
          f"images of shape {tuple(ds.train_x.shape[1:])}, {len(ds.classes)} classes")
    tr_x, tr_y, va_x, va_y = split_train_val(ds.train_x, ds.train_y, a.val_fraction, a.seed,
                                             a.train_limit)
    c, h, w = tr_x.shape[1:]
    crop = min(dflt["crop"], h, w)
    scale = pixel_scale(vars(a))
    if resume is not None:
        mean = resume["mean"]
        pca = ((resume["pca_eigvals"], resume["pca_eigvecs"])
               if "pca_eigvals" in resume else None)
    else:
        mean = mean_image(tr_x, scale=scale)
        pca = lighting_pca(tr_x, scale) if (c == 3 and not a.no_pca) else None
    prep = test_prep(kind, vars(a), mean, crop)

    if resume is not None:
        model = AlexNet(**resume["config"])
        model.load_state_dict({k[6:]: v for k, v in resume.items() if k.startswith("param/")})
        model.load_extra_state(resume["extra_state"])
    else:
        model = AlexNet(a.model, in_channels=c, num_classes=len(ds.classes), input_size=crop,
                        groups=a.groups, init=a.init, activation=a.activation,
                        lrn=not a.no_lrn, pool=a.pool_tuple, dropout=a.dropout, seed=a.seed,
                        width=a.width)
    model.to(device)
    # on CuPy the parameters become views of one buffer, updated in a few calls (sgd_for)
    opt = sgd_for(model, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    state = dict(epoch=0, step=0, partial=None, lr=a.lr, lr_drops=0, best_val=None,
                 best_epoch=None, since_best=0, history=[], args=saved_args(a),
                 swa_count=0, swa_start=None)
    if resume is not None:
        opt.load_state_dict({"lr": resume["train_state"]["lr"], "momentum": a.momentum,
                             "weight_decay": a.weight_decay,
                             "velocity": {k[9:]: v for k, v in resume.items()
                                          if k.startswith("velocity/")}})
        state.update({k: v for k, v in resume["train_state"].items() if k != "args"})
        print(f"resumed from {a.resume}: {state['epoch']} epoch(s) and {state['step']} step(s) "
              f"done, lr {state['lr']:g}")
    swa = None
    if a.swa is not None:
        swa = {k[4:]: to_device(v, device) for k, v in (resume or {}).items()
               if k.startswith("swa/")}
        if bool(swa) != bool(state["swa_count"]):
            raise TrainingError(f"--resume {a.resume}: the checkpoint's weight average "
                                f"does not match its count ({state['swa_count']} epochs)")
    # a resumed run goes on in its checkpoint's folder, where its best.npz is, unless
    # --out says otherwise (then that best.npz comes along: the test needs it)
    resume_dir = os.path.dirname(a.resume) or "." if a.resume else None
    out_dir = a.out or resume_dir or os.path.join("runs", f"{kind}-{model.config['preset']}")
    os.makedirs(out_dir, exist_ok=True)
    if resume is not None and state["best_epoch"] is not None:
        carry_best(os.path.join(resume_dir, "best.npz"), os.path.join(out_dir, "best.npz"),
                   state)
    print(model.summary() if not a.quiet else repr(model))
    if device == "cuda" and tf32_on():
        print("matrix products in TF32 on the tensor cores (CUPY_TF32 is set): faster, "
              "with 10-bit mantissas in the products")
    where = (device if device == "cpu" else
             f"{device} ({gpu_status()[1]}; the ops' GPU routes: {gpu_routes()})")
    print(f"device: {where}; {len(tr_x)} train / {len(va_x)} validation images; "
          f"batch {a.batch_size}, lr {state['lr']:g}, momentum {a.momentum}, "
          f"weight decay {a.weight_decay}"
          + (f", label smoothing {a.label_smoothing:g} (the training loss is the smoothed "
             f"one)" if a.label_smoothing else "") + f"; output in {out_dir}")
    print(f"schedule: {schedule_text(a)}")

    # Bad labels are silent bugs: check the whole set once instead of every batch.
    check_labels(ds, model, a.resume, ("train", ds.train_y), ("test", ds.test_y))

    last_path = os.path.join(out_dir, "last.npz")
    best_path = os.path.join(out_dir, "best.npz")
    train_prep = dict({k: v for k, v in prep.items() if k != "mirrors"},
                      pad=0 if a.no_crop else dflt["pad"],
                      flip=dflt["flip"] and not a.no_flip, pca=pca, erase=a.erase,
                      random_crop=not a.no_crop)
    loader = BatchLoader(tr_x, tr_y, a.batch_size, shuffle=True, seed=a.seed, device=device,
                         drop_last=False, prefetch=not a.no_prefetch, **train_prep)
    ck_prep = dict(prep, pca=pca, classes=list(ds.classes))
    stop = StopRequest(None if a.time_limit is None else time.monotonic() + a.time_limit)
    epoch_wall = None           # the last whole epoch's time, validation and saving included
    current = {}                # when the epoch under way started, if from its first step
    time_limited = False

    def planned_epochs():
        """The epochs this run will have done when it ends: --epochs, or fewer where
        the time limit comes first (judged by the epoch now ending, else the last)."""
        if stop.deadline is None:
            return a.epochs
        now = time.monotonic()
        wall = now - current["start"] if "start" in current else None
        if epoch_wall:      # the last whole epoch's time counts its checkpoints and plots,
            wall = max(wall or 0.0, epoch_wall)     # as the loop's test before an epoch does
        if not wall and state["history"]:   # resumed: the last epoch's time, validation
            last = state["history"][-1]     # included where it was recorded (whole epochs)
            wall = last.get("wall_seconds") or last["seconds"]
        if not wall:
            return a.epochs
        # asked after the epoch now ending was validated: state["epoch"] counts it
        fit = state["epoch"] + int(max(0.0, stop.deadline - now) // wall)
        return min(a.epochs, fit)

    if a.cosine and resume is not None and state["step"] == 0:
        # a run resumed between epochs goes on on the curve of its plan now (another
        # --epochs stretches it from here; the same plan gives the same rate)
        planned = planned_epochs()
        if state["epoch"] < planned:
            state["lr"] = cosine_lr(a.lr, state["epoch"], planned)
            opt.lr = state["lr"]
            print(f"on the cosine of {planned} epochs: epoch {state['epoch'] + 1} trains at "
                  f"lr {state['lr']:g}")
    with stop:
        while state["epoch"] < a.epochs and not stop.requested:
            if (stop.deadline is not None and epoch_wall is not None
                    and time.monotonic() + epoch_wall > stop.deadline):
                time_limited = True      # the next epoch would end after the time limit
                break
            whole = state["step"] == 0
            t0 = time.monotonic()
            current.clear()
            if whole:
                current["start"] = t0
            run_epoch(a, model, opt, loader, state, stop, va_x, va_y, prep, device,
                      out_dir, last_path, best_path, ck_prep, planned_epochs, swa)
            if whole and state["step"] == 0:
                epoch_wall = time.monotonic() - t0
    time_limited = ((time_limited or stop.timed_out) and not stop.signalled
                    and state["epoch"] < a.epochs)
    if time_limited:
        where = f"{state['epoch']} epoch(s)" + (f" and {state['step']} step(s)"
                                                if state["step"] else "")
        print(f"time limit of {a.time_limit:g} s: stopped after {where} of {a.epochs}; "
              f"saved {last_path}; continue with: python train.py --resume {last_path}",
              file=sys.stderr)
        if state["best_epoch"] is None:
            raise TrainingError(f"--time-limit {a.time_limit:g}: no epoch finished in time, "
                                f"so there is no best checkpoint to test")
    if stop.signalled:
        print(f"\ninterrupted after {state['epoch']} epoch(s) and {state['step']} step(s): "
              f"saved {last_path}; continue with: python train.py --resume {last_path}",
              file=sys.stderr)
        return {"interrupted": True, "epoch": state["epoch"], "step": state["step"]}

    # Final report on the test set, with the best checkpoint (lowest validation error):
    # this run's, which best_epoch says it wrote; a best.npz that another run left in
    # the same folder is never tested in its place.
    tested_last = False
    if state["best_epoch"] is not None:
        if is_runs_best(best_path, state):
            best = load_checkpoint(best_path)
            model.load_state_dict({k[6:]: v for k, v in best.items()
                                   if k.startswith("param/")})
        elif state["best_epoch"] != state["epoch"] or state["step"]:
            tested_last = True
            print(f"warning: {best_path} is not this run's best checkpoint (epoch "
                  f"{state['best_epoch']}); testing the weights as the run stopped instead",
                  file=sys.stderr)
    test = evaluate(model, ds.test_x, ds.test_y, prep, a.eval_batch_size, device, a.ten_crop,
                    confusion=True)
    # the best checkpoint's kernels
    save_plots(out_dir, state["history"], model, a.label_smoothing)
    swa_result = None
    if swa:
        swa_result = test_average(a, model, swa, state, ds, va_x, va_y, prep, device,
                                  out_dir, ck_prep)
    return report(test, state, ds, out_dir, model, a, time_limited=time_limited,
                  swa=swa_result, tested_last=tested_last)


def run_fingerprint(state) -> list:
    """What identifies a run's epochs: each one's number and training loss."""
    return [(h["epoch"], h["train_loss"]) for h in state.get("history", [])]


def is_runs_best(path, state) -> bool:
    """Whether ``path`` is the best.npz this run (``state``) wrote: the epoch it names,
    with the same history up to it; not a best.npz that another run left there."""
    if not os.path.isfile(path):
        return False
    try:
        saved = load_checkpoint(path)["train_state"]
    except TrainingError:
        return False
    return (saved.get("epoch") == state["best_epoch"]
            and run_fingerprint(saved) == run_fingerprint(state)[:saved.get("epoch", 0)])


def carry_best(src, dst, state):
    """A run resumed into another folder (--out) brings its best.npz along, so that its
    final test is of the best epoch, whichever folder it was written in."""
    if os.path.abspath(src) == os.path.abspath(dst) or is_runs_best(dst, state):
        return
    if not is_runs_best(src, state):
        print(f"warning: {src} is not this run's best checkpoint (epoch "
              f"{state['best_epoch']}); unless a later epoch does better, the final test "
              f"will be of the last epoch's weights", file=sys.stderr)
        return
    shutil.copyfile(src, dst + ".part")
    os.replace(dst + ".part", dst)


def test_average(a, model, swa, state, ds, va_x, va_y, prep, device, out_dir, ck_prep):
    """The weight average (--swa) as a network: its validation and test errors, and
    swa.npz, a weights-only checkpoint of it (for --eval-only and the ensemble)."""
    model.load_state_dict({k: to_numpy(v) for k, v in swa.items()})
    val = (evaluate(model, va_x, va_y, prep, a.eval_batch_size, device) if len(va_y)
           else dict(top1_error=None))
    test = evaluate(model, ds.test_x, ds.test_y, prep, a.eval_batch_size, device, a.ten_crop)
    save_checkpoint(os.path.join(out_dir, "swa.npz"), model, None, state, ck_prep)
    primary = "tencrop_" if a.ten_crop else ""
    return dict(start_epoch=state["swa_start"], epochs_averaged=state["swa_count"],
                val_top1_error=val["top1_error"],
                test_top1_error=test[f"{primary}top1_error"],
                test_top5_error=test[f"{primary}top5_error"],
                test_center_top1_error=test["top1_error"])


def report(test, state, ds, out_dir, model, a, time_limited=False, swa=None,
           metrics_name=None, tested_last=False) -> dict:
    """Test errors to the console and to out_dir/metrics.json (or ``metrics_name``, for
    --eval-only, which writes nothing else)."""
    primary = "tencrop_" if a.ten_crop else ""
    metrics = dict(
        dataset=ds.name, data_source=ds.source, model=model.config["preset"],
        num_params=model.num_params(), device=a.device,
        test_top1_error=test[f"{primary}top1_error"], test_top5_error=test[f"{primary}top5_error"],
        test_eval=(("ten-crop" if test.get("tencrop_crops", 10) == 10 else "five-crop")
                   if a.ten_crop else "centre crop"),
        test_center_top1_error=test["top1_error"], test_center_top5_error=test["top5_error"],
        best_epoch=state.get("best_epoch"), best_val_top1_error=state.get("best_val"),
        epochs=state["epoch"], history=state["history"], config=model.config,
        args=saved_args(a), environment=environment(a.device))
    if tested_last:           # the best epoch's checkpoint was not found
        metrics["tested_epoch"] = state["epoch"]
        if state.get("step"):
            metrics["tested_step"] = state["step"]
    if time_limited:          # tested before the planned epochs were done
        metrics.update(stopped_by_time_limit=True, epochs_planned=a.epochs)
    if a.device == "cuda":    # float32 matrix products on the tensor cores (CuPy's switch)
        metrics["cupy_tf32"] = tf32_on()
        metrics["gpu_routes"] = gpu_routes()      # the ops' route on CuPy (engine/backend)
    if a.ten_crop:
        metrics.update(test_tencrop_top1_error=test["tencrop_top1_error"],
                       test_tencrop_top5_error=test["tencrop_top5_error"])
    if swa is not None:       # the weight average, tested beside the best checkpoint
        metrics["swa"] = swa
    conf = test.get(f"{primary}confusion")
    if conf is not None:      # where the errors are: by true class, on the primary crops
        per_class = class_errors(conf, ds.classes)
        metrics.update(test_confusion=conf.tolist(), test_class_top1_error=per_class)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, metrics_name or "metrics.json")
    with open(path + ".part", "w") as f:     # a stop mid-write leaves the old file whole
        json.dump(metrics, f, indent=2)
    os.replace(path + ".part", path)
    stopped = (f"epoch {state['epoch']}, the last" if not state.get("step") else
               f"{state['epoch']} epoch(s) and {state['step']} step(s), where it stopped")
    which = (f"{stopped}: best.npz was not this run's" if tested_last
             else f"best epoch {state.get('best_epoch')}" if state.get("best_val") is not None
             else f"epoch {state.get('best_epoch')}, the last: no validation set")
    print(f"test ({len(ds.test_x)} images, {which}): "
          f"centre crop top-1 error {100 * test['top1_error']:.2f}%, "
          f"top-5 error {100 * test['top5_error']:.2f}%")
    if a.ten_crop:
        crops = ("ten crops" if test.get("tencrop_crops", 10) == 10 else
                 "five crops (corners and centre; no mirrors: the net never saw one)")
        print(f"test, {crops}: top-1 error {100 * test['tencrop_top1_error']:.2f}%, "
              f"top-5 error {100 * test['tencrop_top5_error']:.2f}%")
        if a.no_crop:
            print("note: this net was trained without random crops, so the ten crops show "
                  "it shifted images it never saw; its centre-crop error is the fair figure")
    if conf is not None:
        print("test error by true class, the hardest: "
              + ", ".join(f"{c} {100 * e:.1f}%" for c, e in hardest_classes(per_class, 5))
              + " (all of them, and the confusion matrix: metrics.json)")
    if swa is not None:
        val = ("" if swa["val_top1_error"] is None else
               f"validation top-1 error {100 * swa['val_top1_error']:.2f}%, ")
        print(f"weight average of epochs {swa['start_epoch']}-{state['epoch']} "
              f"({swa['epochs_averaged']} epochs; swa.npz): {val}test top-1 error "
              f"{100 * swa['test_top1_error']:.2f}% "
              f"({'ten crops' if a.ten_crop else 'centre crop'}), "
              f"{100 * swa['test_center_top1_error']:.2f}% centre crop")
    if metrics_name:
        print(f"wrote {os.path.join(out_dir, metrics_name)}")
    else:
        print(f"wrote {out_dir}/metrics.json, last.npz, best.npz, curves.png, kernels.png")
    return metrics


def check_labels(ds, model, checkpoint, *named_labels):
    """Every label must be one of the network's classes (on CuPy an index past the
    end is not an error but a wrong answer): raise ValueError naming the problem."""
    k = model.config["num_classes"]
    for name, yy in named_labels:
        if len(yy) and (yy.min() < 0 or yy.max() >= k):
            whose = (f"the network of {checkpoint} has {k} classes" if checkpoint
                     else f"{ds.name} has {len(ds.classes)} classes")
            raise ValueError(f"{ds.name}: {name} labels outside [0, {k}) ({whose}; the "
                             f"labels run from {int(yy.min())} to {int(yy.max())})")


def network_from_checkpoint(path, device="cpu"):
    """(the checkpoint as load_checkpoint reads it, its network on ``device``)."""
    ck = load_checkpoint(path)
    model = AlexNet(**ck["config"])
    model.load_state_dict({k[6:]: v for k, v in ck.items() if k.startswith("param/")})
    model.to(device)
    return ck, model


def eval_only(a) -> dict:
    device = check_device(a.device)
    ck, model = network_from_checkpoint(a.eval_only, device)
    ds = load_data(a)
    kind = dataset_kind(a.dataset)
    prep = test_prep(kind, ck["train_state"].get("args", {}), ck["mean"],
                     model.config["input_size"])
    if tuple(ds.test_x.shape[1:2]) != (model.config["in_channels"],):
        raise ValueError(f"--eval-only: the checkpoint expects {model.config['in_channels']} "
                         f"channel(s) but {ds.name} has {ds.test_x.shape[1]}")
    check_labels(ds, model, a.eval_only, ("test", ds.test_y))
    test = evaluate(model, ds.test_x, ds.test_y, prep, a.eval_batch_size, device, a.ten_crop,
                    confusion=True)
    # without --out, beside the checkpoint, in a file of its own: the run's metrics.json
    # (its time limit, its weight average) stays as training wrote it
    out_dir = a.out or os.path.dirname(os.path.abspath(a.eval_only))
    name = ("metrics.json" if a.out else
            f"eval-{os.path.splitext(os.path.basename(a.eval_only))[0]}.json")
    state = dict(ck["train_state"])
    return report(test, state, ds, out_dir, model, a, metrics_name=name)


def checkpoint_classes(ck, num_classes) -> list:
    """The class names of a checkpoint's network: saved in it, else those of the dataset
    its run names (checkpoints from before the names were saved), else the indices."""
    from data import datasets as D
    names = ck.get("classes") or {
        "fashion-mnist": D.FASHION_MNIST_CLASSES, "fashion-mnist-subset":
        D.FASHION_MNIST_CLASSES, "mnist": D.MNIST_CLASSES, "cifar10": D.CIFAR10_CLASSES,
        "cifar100": D.CIFAR100_CLASSES}.get(ck["train_state"].get("args", {}).get("dataset"))
    return list(names) if names and len(names) == num_classes else [
        str(i) for i in range(num_classes)]


def softmax_outputs(model, x_u8, prep, batch_size=256, device="cpu", mode="center"):
    """(N, classes) float64 softmax outputs on the images x_u8, in order; mode 'ten'
    averages the ten crops' outputs, as the evaluation does."""
    from data.loader import iterate_eval

    out = []
    for xb, _ in iterate_eval(x_u8, np.zeros(len(x_u8), np.int64), batch_size, mode=mode,
                              device=device, **prep):
        p = (sum(softmax(model.forward(crop, train=False)) for crop in xb) / len(xb)
             if mode == "ten" else softmax(model.forward(xb, train=False)))
        out.append(to_numpy(p).astype(np.float64))
    return np.concatenate(out)


def predict_images(a) -> dict:
    """--eval-only CHECKPOINT --predict IMAGE...: each image's most probable classes."""
    from data.datasets import load_image

    device = check_device(a.device)
    ck, model = network_from_checkpoint(a.eval_only, device)
    mean = np.asarray(ck["mean"])
    c, size = mean.shape[0], mean.shape[1]   # the training images' channels and size
    x = np.stack([load_image(p, size, mode="L" if c == 1 else "RGB") for p in a.predict])
    if a.invert:
        x = 255 - x
    kind = dataset_kind(ck["train_state"].get("args", {}).get("dataset", "folder:"))
    prep = test_prep(kind, ck["train_state"].get("args", {}), mean, model.config["input_size"])
    probs = softmax_outputs(model, x, prep, a.eval_batch_size, device,
                            "ten" if a.ten_crop else "center")
    classes = checkpoint_classes(ck, model.config["num_classes"])
    k = min(5, len(classes))
    out = []
    print(f"{a.eval_only}: {crops_name(prep) + ' averaged' if a.ten_crop else 'the centre crop'}"
          + (", brightness inverted" if a.invert else ""))
    for path, p in zip(a.predict, probs):
        top = np.argsort(-p, kind="stable")[:k]
        out.append(dict(image=path, top=[(classes[i], float(p[i])) for i in top]))
        print(f"{path}: " + ", ".join(f"{classes[i]} {100 * p[i]:.1f}%" for i in top))
    return dict(predictions=out)


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    from data.datasets import DatasetError

    try:
        if a.resume is not None and a.eval_only is not None:
            raise ValueError("--resume and --eval-only: give one; --resume trains on from "
                             "a checkpoint, --eval-only tests one")
        if a.predict and a.eval_only is None:
            raise ValueError("--predict needs --eval-only CHECKPOINT, the network that "
                             "classifies the images")
        if a.invert and not a.predict:
            raise ValueError("--invert inverts the images of --predict; there are none")
        ck = a.resume or a.eval_only
        if ck is not None:
            if not os.path.isfile(ck):
                raise FileNotFoundError(f"{'--resume' if a.resume else '--eval-only'}: "
                                        f"checkpoint {ck!r} does not exist")
            apply_checkpoint_args(a, ck, explicit_flags(parser, argv), parser)
        validate_args(a)
        metrics = (predict_images(a) if a.predict else eval_only(a) if a.eval_only
                   else train(a))
    except (DatasetError, GPUUnavailableError, TrainingError, FileNotFoundError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e, DivergedError):
            return 3
        return 2 if not isinstance(e, TrainingError) else 1
    return 130 if metrics.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
