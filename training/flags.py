"""The command-line flags of a run: train.py's parser, and turning parsed flags into a
TrainConfig (with --resume or --eval-only, the checkpoint's settings fill in every
flag not given). The experiments define runs as train.py flags and read them here too.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys

from alexnet import PRESETS
from training.checkpoints import load_checkpoint
from training.config import TrainConfig, merge_saved_settings

DEFAULTS = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train AlexNet (Krizhevsky et al. 2012) with the paper's recipe on a small "
                    "real dataset, CPU (NumPy) or GPU (CuPy).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.set_defaults(**dataclasses.asdict(DEFAULTS))
    add_data_flags(p.add_argument_group("data"))
    add_model_flags(p.add_argument_group("model"))
    add_optimization_flags(p.add_argument_group("optimization (the paper's recipe by default)"))
    add_run_flags(p.add_argument_group("run"))
    return p


def add_data_flags(d):
    d.add_argument("--dataset",
                   help="fashion-mnist, fashion-mnist-subset (bundled, offline), mnist, cifar10, "
                        "cifar100, or folder:PATH (one sub-folder per class, JPEG/PNG)")
    d.add_argument("--data-dir",
                   help="folder holding the dataset files (else $ALEXNET_DATA, the cache folder, "
                        "and for Fashion-MNIST /usr/share/datasets/fashion-mnist are searched, "
                        "then the files are downloaded and checksummed)")
    d.add_argument("--no-download", action="store_true",
                   help="never download; fail if the files are not found locally")
    d.add_argument("--no-fallback", action="store_true",
                   help="fail, rather than train on the bundled 5,000-image subset, when "
                        "Fashion-MNIST is neither found nor downloadable")
    d.add_argument("--train-limit", type=int, metavar="N",
                   help="use only the first N training images (quick runs)")
    d.add_argument("--val-fraction", type=float,
                   help="fraction of the training set held out for validation (LR schedule, "
                        "best checkpoint). 0: train on every image; needs --lr-drops, and "
                        "the last epoch is the one tested")
    d.add_argument("--no-crop", action="store_true",
                   help="no random crops (train on the centre crop; judge the net by its "
                        "centre-crop test error)")
    d.add_argument("--no-flip", action="store_true", help="no random horizontal reflections")
    d.add_argument("--no-pca", action="store_true",
                   help="no PCA colour augmentation (only applies to RGB data)")
    d.add_argument("--raw-pixels", action="store_true",
                   help="pixels 0-255 minus the mean image, as the paper, instead of 0-1 "
                        "(the paper's initialization and LRN constants were chosen for them)")
    d.add_argument("--ten-crop", dest="ten_crop", action="store_true",
                   help="test on ten crops too, as by default (corners, centre, mirrors; "
                        "softmax averaged); five without mirrors for a net trained without")
    d.add_argument("--no-ten-crop", dest="ten_crop", action="store_false",
                   help="test on the centre crop only")
    d.add_argument("--no-prefetch", action="store_true",
                   help="prepare batches in the main thread instead of in the background")


def add_model_flags(m):
    m.add_argument("--model", choices=sorted(PRESETS),
                   help="AlexNet preset: paper (3x227x227), mini (28-32 px), tiny (fast)")
    m.add_argument("--groups", type=int,
                   help="groups of conv2/4/5 (2 = the paper's two-GPU split); default: preset's")
    m.add_argument("--init", choices=["paper", "he", "caffe"],
                   help="he (default): He-scaled weights, biases 0.1 in conv2,4,5 and "
                        "fc6,7; paper: N(0, 0.01) weights, those biases 1 (the small "
                        "presets sit near chance with it for epochs); caffe: those biases "
                        "0.1 and fc6,7 weights N(0, 0.005)")
    m.add_argument("--activation", choices=["relu", "tanh"])
    m.add_argument("--no-lrn", action="store_true", help="drop local response normalization")
    m.add_argument("--pool", help="max-pool size,stride (3,2 overlapping as the paper; "
                                  "2,2 non-overlapping)")
    m.add_argument("--dropout", type=float, help="dropout probability in fc6, fc7")
    m.add_argument("--width", type=float,
                   help="multiply every conv layer's kernel count (0.5: the paper's "
                        "one-column comparison net with half the kernels)")


def add_optimization_flags(o):
    o.add_argument("--epochs", type=int)
    o.add_argument("--batch-size", type=int)
    o.add_argument("--lr", type=float)
    o.add_argument("--momentum", type=float)
    o.add_argument("--weight-decay", type=float)
    o.add_argument("--lr-patience", type=int,
                   help="divide the LR by 10 after this many epochs without a new best "
                        "validation error")
    o.add_argument("--max-lr-drops", type=int,
                   help="the paper divided the LR by 10 three times before the end")
    o.add_argument("--lr-drops", metavar="FRACTIONS",
                   help="a fixed schedule instead: divide the LR by 10 once these fractions "
                        "of the epochs are done, e.g. 0.5,0.7; 'none' undoes the flag")
    o.add_argument("--seed", type=int,
                   help="seeds weights, the validation split, shuffling, augmentation, dropout")


def add_run_flags(r):
    r.add_argument("--device", choices=["cpu", "cuda"])
    r.add_argument("--out", help="output folder (default runs/DATASET-MODEL); a new run "
                                 "refuses one that already holds a run")
    r.add_argument("--overwrite", action="store_true",
                   help="let a new run (or --resume into another folder, or --eval-only "
                        "--out) replace the run already in --out")
    r.add_argument("--resume", metavar="PATH",
                   help="continue from a checkpoint (last.npz) written by an earlier run")
    r.add_argument("--eval-only", default=None, metavar="CHECKPOINT",
                   help="test a checkpoint on the test set and exit, without training")
    r.add_argument("--predict", nargs="+", default=None, metavar="IMAGE",
                   help="with --eval-only CHECKPOINT: classify these image files, printing "
                        "each one's most probable classes")
    r.add_argument("--invert", action="store_true", default=False,
                   help="with --predict: invert the images' brightness first (Fashion-MNIST "
                        "is light on black; a photo is mostly dark on light)")
    r.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="train for at most this long: no epoch is started that would end "
                        "after it, and a step past it stops the epoch; --resume goes on")
    r.add_argument("--eval-batch-size", type=int)
    r.add_argument("--quiet", action="store_true", help="no progress bar")


COMMAND_ONLY = ("eval_only", "predict", "invert")     # flags that are not TrainConfig's


def explicit_flags(parser, argv) -> set:
    """Which options were given on the command line (as opposed to defaults)."""
    quiet = copy.deepcopy(parser)
    quiet._defaults.clear()
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
    return set(vars(quiet.parse_known_args(argv)[0]))


def parse(argv=None, parser=None):
    """(parsed flags, their TrainConfig, validated): what train.py's flags ``argv`` say.
    Raises ValueError or FileNotFoundError naming a bad flag."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    check_commands(args)
    config = config_from(args, parser, argv).validate(training=args.eval_only is None)
    return args, config


def config_from(args, parser, argv) -> TrainConfig:
    """The TrainConfig the flags say; with --resume or --eval-only, the checkpoint's
    settings for every flag not given."""
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k not in COMMAND_ONLY})
    checkpoint = args.resume or args.eval_only
    if checkpoint is None:
        return config
    saved = load_checkpoint(checkpoint, arrays=False)["train_state"]["args"]
    return merge_saved_settings(config, saved, explicit_flags(parser, argv), checkpoint,
                                evaluating=args.eval_only is not None,
                                warn=None if args.predict else
                                (lambda line: print(line, file=sys.stderr)))


def check_commands(args) -> None:
    if args.resume is not None and args.eval_only is not None:
        raise ValueError("--resume and --eval-only: give one; --resume trains on from "
                         "a checkpoint, --eval-only tests one")
    if args.predict and args.eval_only is None:
        raise ValueError("--predict needs --eval-only CHECKPOINT, the network that "
                         "classifies the images")
    if args.invert and not args.predict:
        raise ValueError("--invert inverts the images of --predict; there are none")
    for flag, path in (("--resume", args.resume), ("--eval-only", args.eval_only)):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"{flag}: checkpoint {path!r} " + (
                "is not a file" if os.path.exists(path) else "does not exist"))
