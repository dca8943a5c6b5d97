"""Testing a network: top-1 and top-5 error on the centre crop and on the paper's ten
crops (Section 4.1: the four corners, the centre, and their mirrors, with the softmax
outputs averaged), the loss, and the confusion matrix."""
from __future__ import annotations

import math
import os

import numpy as np

from data import datasets
from data.datasets import load_image
from data.loader import iterate_eval
from engine.backend import check_device, to_numpy
from training.metrics import confusion_matrix, topk_correct
from layers.loss import softmax, softmax_cross_entropy
from training.checkpoints import network_from_checkpoint, prepare_output
from training.data import check_labels, crops_name, dataset_kind, load_data, test_prep
from training.report import report
from training.state import DivergedError, TrainState

# Class names of the named datasets, for checkpoints that do not hold their own.
CLASS_NAMES = {"fashion-mnist": datasets.FASHION_MNIST_CLASSES,
               "fashion-mnist-subset": datasets.FASHION_MNIST_CLASSES,
               "mnist": datasets.MNIST_CLASSES, "cifar10": datasets.CIFAR10_CLASSES,
               "cifar100": datasets.CIFAR100_CLASSES}


def evaluate(model, x_u8, y, prep, batch_size, device, ten_crop=False, confusion=False):
    """Top-1 and top-5 error on the centre crop (and on ten crops if asked), and the
    mean loss on the centre crop. Returns a dict of floats; with ``confusion``, also
    each mode's confusion matrix (``confusion``, ``tencrop_confusion``: rows the true
    class, columns the predicted one, as an int array)."""
    num_classes = model.config["num_classes"]
    k5 = min(5, num_classes)
    out = {}
    for mode in ["center"] + (["ten"] if ten_crop else []):
        correct1 = correct5 = 0
        loss_sum = 0.0
        conf = np.zeros((num_classes, num_classes), np.int64)
        for xb, yb in iterate_eval(x_u8, y, batch_size, mode=mode, device=device, **prep):
            if mode == "ten":
                scores = average_softmax(model, xb)
            else:
                scores = model.forward(xb, train=False)      # the logits
                loss, _ = softmax_cross_entropy(scores, yb, check_labels=False)
                loss_sum += float(loss) * len(yb)
            correct1 += int(topk_correct(scores, yb, 1).sum())
            correct5 += int(topk_correct(scores, yb, k5).sum())
            if confusion:
                conf += confusion_matrix(scores.argmax(axis=1), yb, num_classes)
        n = len(y)
        tag = "" if mode == "center" else "tencrop_"
        if confusion:
            out[f"{tag}confusion"] = conf
        out[f"{tag}top1_error"] = 1 - correct1 / n
        out[f"{tag}top5_error"] = 1 - correct5 / n
        if mode == "ten":
            out["tencrop_crops"] = 10 if prep.get("mirrors", True) else 5
        else:
            out["loss"] = loss_sum / n
            if not math.isfinite(loss_sum):
                # an update after the last finite training loss can still leave NaN or
                # inf weights; caught here, before such a net is saved or scored
                raise DivergedError(
                    f"the network's outputs are not finite (loss {loss_sum}) on {n} "
                    f"evaluation images: its weights hold NaN or inf, or are so large "
                    f"that its outputs overflow. Checkpoints written before this point "
                    f"are unaffected; try a smaller --lr or --init he.")
    return out


def average_softmax(model, crops):
    """The mean of the softmax outputs over the crops (K, N, C, H, W) -> (N, classes):
    the paper's ten-crop test (five crops, without the mirrors, for a net trained
    without them)."""
    probs = None
    for crop in crops:
        p = softmax(model.forward(crop, train=False))
        probs = p if probs is None else probs + p
    return probs / len(crops)


def softmax_outputs(model, x_u8, prep, batch_size=256, device="cpu", mode="center"):
    """(N, classes) float64 softmax outputs on the images x_u8, in order; mode 'ten'
    averages the ten crops' outputs, as the evaluation does."""
    out = []
    for xb, _ in iterate_eval(x_u8, np.zeros(len(x_u8), np.int64), batch_size, mode=mode,
                              device=device, **prep):
        p = (average_softmax(model, xb) if mode == "ten"
             else softmax(model.forward(xb, train=False)))
        out.append(to_numpy(p).astype(np.float64))
    return np.concatenate(out)


# ---------------------------------------------------------------------------- commands

def evaluate_checkpoint(config, path) -> dict:
    """Test the network of checkpoint ``path`` on ``config.dataset``'s test set and
    write its metrics: to ``config.out``/metrics.json, or beside the checkpoint as
    eval-NAME.json (the run's own metrics.json stays as training wrote it)."""
    device = check_device(config.device)
    ck, model = network_from_checkpoint(path, device)
    # checked before the test: a folder that can be written to, and no run's files
    # replaced unless --overwrite says so (a checkpoint's folder is left as it is)
    out_dir = config.out or os.path.dirname(os.path.abspath(path))
    prepare_output(out_dir, f"--out {out_dir}" if config.out else out_dir,
                   may_hold_a_run=config.overwrite or not config.out, clean=False,
                   remedy="choose another --out, leave --out out to write "
                          "eval-NAME.json beside the checkpoint, or replace its "
                          "metrics.json with --overwrite")
    dataset = load_data(config.dataset, config.data_dir, download=not config.no_download,
                        fallback=False)    # never the bundled subset in place of the data
    prep = test_prep(dataset_kind(config.dataset), ck["train_state"].get("args", {}),
                     ck["mean"], model.config["input_size"])
    if tuple(dataset.test_x.shape[1:2]) != (model.config["in_channels"],):
        raise ValueError(f"--eval-only: the checkpoint expects {model.config['in_channels']} "
                         f"channel(s) but {dataset.name} has {dataset.test_x.shape[1]}")
    check_labels(dataset, model.config["num_classes"], path, ("test", dataset.test_y))
    test = evaluate(model, dataset.test_x, dataset.test_y, prep, config.eval_batch_size,
                    device, config.ten_crop, confusion=True)
    name = ("metrics.json" if config.out else
            f"eval-{os.path.splitext(os.path.basename(path))[0]}.json")
    return report(test, TrainState.from_dict(ck["train_state"]), dataset, out_dir, model,
                  config, metrics_name=name)


def checkpoint_classes(ck, num_classes) -> list:
    """The class names of a checkpoint's network: saved in it, else those of the dataset
    its run names (checkpoints from before the names were saved), else the indices."""
    names = ck.get("classes") or CLASS_NAMES.get(
        ck["train_state"].get("args", {}).get("dataset"))
    return list(names) if names and len(names) == num_classes else [
        str(i) for i in range(num_classes)]


def predict_images(path, images, device="cpu", ten_crop=True, invert=False,
                   batch_size=256) -> dict:
    """Classify image files with the network of checkpoint ``path``, each prepared as
    its training images were; print and return each one's most probable classes."""
    device = check_device(device)
    ck, model = network_from_checkpoint(path, device)
    mean = np.asarray(ck["mean"])
    c, size = mean.shape[0], mean.shape[1]   # the training images' channels and size
    x = np.stack([load_image(p, size, mode="L" if c == 1 else "RGB") for p in images])
    if invert:
        x = 255 - x
    settings = ck["train_state"].get("args", {})
    prep = test_prep(dataset_kind(settings.get("dataset", "folder:")), settings, mean,
                     model.config["input_size"])
    probs = softmax_outputs(model, x, prep, batch_size, device, "ten" if ten_crop else "center")
    classes = checkpoint_classes(ck, model.config["num_classes"])
    k = min(5, len(classes))
    out = []
    print(f"{path}: {crops_name(prep) + ' averaged' if ten_crop else 'the centre crop'}"
          + (", brightness inverted" if invert else ""))
    for image, p in zip(images, probs):
        top = np.argsort(-p, kind="stable")[:k]
        out.append(dict(image=image, top=[(classes[i], float(p[i])) for i in top]))
        print(f"{image}: " + ", ".join(f"{classes[i]} {100 * p[i]:.1f}%" for i in top))
    return dict(predictions=out)
