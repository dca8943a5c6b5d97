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

This file is the command line: the flags are in training/flags.py (python train.py
--help lists them), the training loop in training/loop.py.
"""
from __future__ import annotations

import sys

from data.datasets import DatasetError
from engine.backend import GPUUnavailableError
from training import (DivergedError, TrainingError, evaluate_checkpoint, fit,
                      predict_images)
from training.flags import parse


def main(argv=None) -> int:
    try:
        args, config = parse(argv)
        if args.predict:
            metrics = predict_images(args.eval_only, args.predict, config.device,
                                     config.ten_crop, args.invert, config.eval_batch_size)
        elif args.eval_only:
            metrics = evaluate_checkpoint(config, args.eval_only)
        else:
            metrics = fit(config)
    except (DatasetError, GPUUnavailableError, TrainingError, FileNotFoundError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e, DivergedError):
            return 3
        return 1 if isinstance(e, TrainingError) else 2
    except KeyboardInterrupt:       # before training, or a second Ctrl-C: at once
        print("\ninterrupted; every checkpoint written before is kept", file=sys.stderr)
        return 130
    return 130 if metrics.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
