"""The training loop, and the set-up around it.

    fit(config)          set up a run (or resume one), train it, test it: metrics
    train_loop(...)      the loop itself, on one screen

A run's pieces travel together in a ``Run``; what changes from epoch to epoch (and is
saved in every checkpoint) is the ``TrainState``.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from alexnet import AlexNet
from data.augment import lighting_pca, mean_image
from data.loader import BatchLoader
from engine.backend import check_device, get_array_module, gpu_routes, gpu_status
from training.metrics import topk_correct
from engine.optim import sgd_for
from training.progress import ProgressBar
from layers.loss import softmax_cross_entropy
from training.checkpoints import (carry_best, check_room, is_runs_best, load_checkpoint,
                                  prepare_output, save_checkpoint, weights_of)
from training.config import TrainConfig
from training.data import (CROPS, check_classes, check_labels, check_same_data,
                           data_fingerprint, dataset_kind, load_data, pixel_scale,
                           split_train_val, test_prep)
from training.evaluation import evaluate
from training.report import report, save_plots, tf32_on
from training.schedule import Schedule
from training.state import DivergedError, EpochTally, TrainingError, TrainState
from training.stop import StopRequest

# Steps between two reads of the training loss and accuracy on a GPU (EpochTally.read);
# on the CPU there is nothing to wait for, so every step.
GPU_READ_EVERY = 16


def read_interval(device: str) -> int:
    return 1 if device == "cpu" else GPU_READ_EVERY


@dataclass
class Run:
    """Everything a run trains and tests with."""
    config: TrainConfig
    model: AlexNet
    optimizer: object               # engine.optim.SGD
    loader: BatchLoader             # the training batches, augmented
    schedule: Schedule
    dataset: object                 # data.datasets.Dataset (its test set)
    val_x: object
    val_y: object
    prep: dict                      # how test and validation images are prepared
    checkpoint_prep: dict           # what a checkpoint keeps of it (mean, pca, classes)
    out_dir: str
    good: str | None = None         # the last checkpoint known good: resumed from, or saved
    written: set = field(default_factory=set)     # the files this run has written

    @property
    def last_path(self) -> str:
        return os.path.join(self.out_dir, "last.npz")

    @property
    def best_path(self) -> str:
        return os.path.join(self.out_dir, "best.npz")


def train_loop(run: Run, state: TrainState, stop: StopRequest) -> None:
    """Per batch: forward, loss, backward, update. Per epoch: validate, schedule,
    checkpoint. Returns when the epochs are done or a stop is requested (Ctrl-C, the
    time limit), after saving a checkpoint that --resume continues from."""
    model, opt, loader, config = run.model, run.optimizer, run.loader, run.config
    steps = len(loader)
    images = min(len(loader.x), steps * loader.batch_size)
    read_every = read_interval(config.device)
    while state.epoch < config.epochs and not stop.requested:
        if not stop.room_for_an_epoch(whole=state.step == 0):
            break
        epoch = state.epoch + 1
        tally = (EpochTally.from_dict(state.partial, steps, images) if state.partial
                 else EpochTally(steps, images))
        bar = ProgressBar(steps, desc=f"epoch {epoch}/{config.epochs}",
                          enabled=False if config.quiet else None)
        began = time.perf_counter()
        for step, (x, y) in enumerate(loader.iterate(epoch, start=state.step), state.step + 1):
            logits = model.forward(x, train=True)
            loss, dlogits = softmax_cross_entropy(logits, y, check_labels=False)
            tally.record(step, len(y), loss, topk_correct(logits, y, 1).sum())
            if len(tally.pending) >= read_every or step == steps:
                tally.read(diverged(run, state, epoch))  # a NaN loss stops before the update
            model.backward(dlogits)
            opt.step(model.grads)
            show_progress(bar, step, tally, time.perf_counter() - began)
            if stop.requested and step < steps:       # stopped mid-epoch: save the steps
                tally.read(diverged(run, state, epoch))
                tally.seconds += time.perf_counter() - began
                state.step, state.partial = step, tally.to_dict()
                save_checkpoints(run, state, best=False)
                return
        tally.seconds += time.perf_counter() - began
        val = validate(run, state)
        improved = state.end_epoch(tally, val)
        end_progress(bar, state.history[-1])
        run.schedule.after_epoch(state, opt, improved)
        save_checkpoints(run, state, best=improved)
        run.written.update(save_plots(run.out_dir, state.history, model))
        stop.epoch_done()


def save_checkpoints(run: Run, state: TrainState, best: bool) -> None:
    """last.npz, and best.npz first where this epoch is the best: a stop between the
    two writes never leaves best.npz behind what last.npz records. A write that fails
    (a full disk) stops the run in one line; the file it would have replaced is kept."""
    for path in ([run.best_path] if best else []) + [run.last_path]:
        try:
            save_checkpoint(path, run.model, run.optimizer, state, run.checkpoint_prep)
        except OSError as e:
            kept = (f"the last good checkpoint, {run.good}, is kept: make room and "
                    f"continue with: python train.py --resume {run.good}" if run.good
                    else "no checkpoint of this run was saved")
            raise TrainingError(f"cannot write {path} ({e.strerror or e}); stopped; "
                                f"{kept}") from None
        run.written.add(os.path.basename(path))
    run.good = run.last_path


def validate(run: Run, state: TrainState) -> dict:
    """The validation loss and errors; without a validation set (--val-fraction 0), None
    for each, after checking that the weights are still finite."""
    if len(run.val_y):
        return evaluate(run.model, run.val_x, run.val_y, run.prep,
                        run.config.eval_batch_size, run.config.device)
    bad = [k for k, w in run.model.params.items()
           if not bool(get_array_module(w).isfinite(w).all())]
    if bad:
        raise DivergedError(f"the weights became non-finite in epoch {state.epoch + 1} "
                            f"(first: {bad[0]}; lr {state.lr:g}); stopped without saving "
                            f"this epoch. Try a smaller --lr.")
    return dict(loss=None, top1_error=None, top5_error=None)


def diverged(run: Run, state: TrainState, epoch: int):
    """What to do when a step's loss is not finite: stop, naming the last good
    checkpoint and what to try."""
    config = run.config

    def stop_run(step, value):
        hint = (" or --init he." if config.init != "he" else
                " or 0-1 pixels (no --raw-pixels)." if config.raw_pixels else ".")
        last = f"The last good checkpoint is {run.good}. " if run.good else ""
        raise DivergedError(f"the loss became {value} at epoch {epoch}, step {step} (lr "
                            f"{state.lr:g}); stopped without saving. {last}Try a smaller "
                            f"--lr{hint}")
    return stop_run


def show_progress(bar, step, tally, seconds) -> None:
    if tally.seen:
        rate = tally.seen / (tally.seconds + seconds)
        bar.update(step, loss=f"{tally.loss:.4f}", err=f"{100 * tally.error:.2f}%",
                   **{"img/s": f"{rate:.0f}"})


def end_progress(bar, entry) -> None:
    shown = dict(loss=f"{entry['train_loss']:.4f}", err=f"{100 * entry['train_top1_error']:.2f}%")
    if entry["val_top1_error"] is not None:
        shown["val_err"] = f"{100 * entry['val_top1_error']:.2f}%"
    line = bar.close(**shown, lr=f"{entry['lr']:g}",
                     **{"img/s": f"{entry['images_per_second']:.0f}"})
    if not bar.live:
        print(line, flush=True)


# ---------------------------------------------------------------------------- set-up

def fit(config: TrainConfig) -> dict:
    """Train a network as ``config`` says (resuming from ``config.resume``), then test
    its best checkpoint. Returns the metrics written to metrics.json, or
    ``{"interrupted": True, ...}`` after Ctrl-C."""
    run, state = prepare(config)
    with StopRequest(config.time_limit) as stop:
        train_loop(run, state, stop)
    try:
        return finish(run, state, stop)
    except KeyboardInterrupt:            # Ctrl-C in the final test: the checkpoints stay
        tested = run.best_path if is_runs_best(run.best_path, state) else run.good
        print("\ninterrupted during the final test; the checkpoints are kept"
              + (f": test again with python train.py --eval-only {tested}" if tested
                 else ""), file=sys.stderr)
        return {"interrupted": True, "epoch": state.epoch, "step": state.step}


def prepare(config: TrainConfig) -> tuple[Run, TrainState]:
    """Check the output folder, load the data, build (or restore) the network, the
    optimizer and the state: everything that can fail before the first step."""
    device = check_device(config.device)
    resume = load_resume(config.resume) if config.resume else None
    out_dir = output_folder(config)
    # never the bundled subset in place of the data a checkpoint was trained on
    dataset = load_data(config.dataset, config.data_dir, download=not config.no_download,
                        fallback=not (config.no_fallback or config.resume))
    if len(dataset.test_y) == 0:
        raise ValueError(f"{dataset.name}: the test set is empty, so the run could not be "
                         f"tested at its end ({dataset.source})")
    check_classes(dataset)
    data = data_fingerprint(dataset, config.train_limit)
    if resume is not None:
        check_same_data(config.resume, resume["train_state"].get("data"), data,
                        lambda line: print(line, file=sys.stderr))
    kind = dataset_kind(config.dataset)
    crops = CROPS[kind]
    print(f"data: {dataset.name} from {dataset.source}: {len(dataset.train_x)} train / "
          f"{len(dataset.test_x)} test images of shape {tuple(dataset.train_x.shape[1:])}, "
          f"{len(dataset.classes)} classes")
    train_x, train_y, val_x, val_y = split_train_val(
        dataset.train_x, dataset.train_y, config.val_fraction, config.seed, config.train_limit)
    crop = min(crops["crop"], *train_x.shape[2:])
    model, mean, pca = restore_or_build(config, resume, train_x, len(dataset.classes), crop)
    check_room(out_dir, model.num_params())
    model.to(device)
    # on CuPy the parameters become views of one buffer, updated in a few calls
    optimizer = sgd_for(model, lr=config.lr, momentum=config.momentum,
                        weight_decay=config.weight_decay)
    state = restore_state(config, resume, optimizer, data)
    prep = test_prep(kind, config.settings(), mean, crop)
    schedule = Schedule(config)
    describe_run(config, model, state, len(train_x), len(val_x), out_dir, schedule)
    # Bad labels are silent bugs: check the whole set once instead of every batch.
    check_labels(dataset, model.config["num_classes"], config.resume,
                 ("train", dataset.train_y), ("test", dataset.test_y))
    loader = BatchLoader(
        train_x, train_y, config.batch_size, shuffle=True, seed=config.seed, device=device,
        drop_last=False, prefetch=not config.no_prefetch, mean=mean, scale=prep["scale"],
        crop=crop, pad=0 if config.no_crop else crops["pad"],
        flip=crops["flip"] and not config.no_flip, pca=pca, random_crop=not config.no_crop)
    run = Run(config, model, optimizer, loader, schedule, dataset, val_x, val_y, prep,
              dict(prep, pca=pca, classes=list(dataset.classes)), out_dir, good=config.resume)
    if bring_best(config, state, out_dir):
        run.written.add("best.npz")
    return run, state


def load_resume(path) -> dict:
    """The checkpoint --resume goes on from, checked (load_checkpoint): a run's, with
    the momentum it continues with."""
    resume = load_checkpoint(path)
    if "weights_only" in resume or not any(k.startswith("velocity/") for k in resume):
        raise TrainingError(f"--resume {path}: this file holds the weights only, "
                            f"without the momentum a run continues with; evaluate it with "
                            f"--eval-only, or resume from the run's last.npz")
    return resume


def restore_state(config, resume, optimizer, data) -> TrainState:
    """A new run's TrainState, or the checkpoint's, with its momentum in ``optimizer``."""
    if resume is None:
        return TrainState(lr=config.lr, settings=config.settings(), data=data)
    optimizer.load_state_dict({
        "lr": resume["train_state"]["lr"], "momentum": config.momentum,
        "weight_decay": config.weight_decay,
        "velocity": {k[len("velocity/"):]: v for k, v in resume.items()
                     if k.startswith("velocity/")}})
    state = TrainState.from_dict(dict(resume["train_state"], args=config.settings()))
    state.data = data            # the same data (checked), or recorded from now on
    print(f"resumed from {config.resume}: {state.epoch} epoch(s) and {state.step} "
          f"step(s) done, lr {state.lr:g}")
    return state


def restore_or_build(config, resume, train_x, num_classes, crop):
    """(model, mean image, PCA of the colours or None): the checkpoint's, or new ones
    from the training images."""
    if resume is not None:
        model = AlexNet(**resume["config"])
        model.load_state_dict(weights_of(resume))
        try:
            model.load_extra_state(resume["extra_state"])
        except (KeyError, ValueError) as e:
            raise TrainingError(f"checkpoint {config.resume!r} is not a readable train.py "
                                f"checkpoint (extra_state: {e})") from None
        pca = ((resume["pca_eigvals"], resume["pca_eigvecs"])
               if "pca_eigvals" in resume else None)
        return model, resume["mean"], pca
    channels = train_x.shape[1]
    scale = pixel_scale(config.raw_pixels)
    mean = mean_image(train_x, scale=scale)
    pca = lighting_pca(train_x, scale) if (channels == 3 and not config.no_pca) else None
    model = AlexNet(config.model, in_channels=channels, num_classes=num_classes,
                    input_size=crop, groups=config.groups, init=config.init,
                    activation=config.activation, lrn=not config.no_lrn,
                    pool=config.pool_size_stride, dropout=config.dropout,
                    seed=config.seed, width=config.width)
    return model, mean, pca


def describe_run(config, model, state, n_train, n_val, out_dir, schedule) -> None:
    """The lines that start a run: the network's layers, the device, the schedule."""
    print(model.summary() if not config.quiet else repr(model))
    if config.device == "cuda" and tf32_on():
        print("matrix products in TF32 on the tensor cores (CUPY_TF32 is set): faster, "
              "with 10-bit mantissas in the products")
    where = (config.device if config.device == "cpu" else
             f"{config.device} ({gpu_status()[1]}; the ops' GPU routes: {gpu_routes()})")
    print(f"device: {where}; {n_train} train / {n_val} validation images; "
          f"batch {config.batch_size}, lr {state.lr:g}, momentum {config.momentum}, "
          f"weight decay {config.weight_decay}; output in {out_dir}")
    print(f"schedule: {schedule.describe()}")


def output_folder(config) -> str:
    """--out; else a resumed run goes on in its checkpoint's folder, where its best.npz
    is; else runs/DATASET-MODEL. Checked before anything is loaded or trained: a folder
    (made if need be) that can be written to, and that holds no run unless it is the
    resumed checkpoint's own or --overwrite says to replace it."""
    resume_dir = (os.path.dirname(config.resume) or ".") if config.resume else None
    out_dir = (config.out or resume_dir
               or os.path.join("runs", f"{dataset_kind(config.dataset)}-{config.model}"))
    what = (f"--out {out_dir}" if config.out else
            f"the output folder {out_dir} (the checkpoint's)" if resume_dir else
            f"the output folder {out_dir} (the default --out)")
    own = resume_dir is not None and os.path.realpath(resume_dir) == os.path.realpath(out_dir)
    removed = prepare_output(out_dir, what, may_hold_a_run=own or config.overwrite)
    if removed:
        print(f"note: removed {len(removed)} temporary file(s) that a stopped run left in "
              f"{out_dir}: {', '.join(removed)}", file=sys.stderr)
    return out_dir


def bring_best(config, state, out_dir) -> bool:
    """A run resumed into another folder brings its best.npz along: its final test
    needs it. Returns whether it was copied."""
    if not config.resume or state.best_epoch is None:
        return False
    resume_dir = os.path.dirname(config.resume) or "."
    return carry_best(os.path.join(resume_dir, "best.npz"),
                      os.path.join(out_dir, "best.npz"), state)


def finish(run: Run, state: TrainState, stop: StopRequest) -> dict:
    """After the loop: say why it stopped early, if it did; then test the best
    checkpoint (lowest validation error) on the test set and report."""
    config = run.config
    time_limited = ((stop.out_of_time or stop.timed_out) and not stop.signalled
                    and state.epoch < config.epochs)
    if time_limited:
        where = f"{state.epoch} epoch(s)" + (f" and {state.step} step(s)" if state.step else "")
        print(f"time limit of {config.time_limit:g} s: stopped after {where} of "
              f"{config.epochs}{saved(run)}", file=sys.stderr)
        if state.best_epoch is None:
            raise TrainingError(f"--time-limit {config.time_limit:g}: no epoch finished in "
                                f"time, so there is no best checkpoint to test")
    if stop.signalled:
        print(f"\ninterrupted after {state.epoch} epoch(s) and {state.step} step(s)"
              f"{saved(run)}", file=sys.stderr)
        return {"interrupted": True, "epoch": state.epoch, "step": state.step}
    # the best checkpoint is this run's own, which best_epoch says it wrote: a best.npz
    # that another run left in the same folder is never tested in its place
    tested_last = False
    if state.best_epoch is not None:
        if is_runs_best(run.best_path, state):
            run.model.load_state_dict(weights_of(load_checkpoint(run.best_path)))
        elif state.best_epoch != state.epoch or state.step:
            tested_last = True
            print(f"warning: {run.best_path} is not this run's best checkpoint (epoch "
                  f"{state.best_epoch}); testing the weights as the run stopped instead",
                  file=sys.stderr)
    test = evaluate(run.model, run.dataset.test_x, run.dataset.test_y, run.prep,
                    config.eval_batch_size, config.device, config.ten_crop, confusion=True)
    # the tested network's kernels
    run.written.update(save_plots(run.out_dir, state.history, run.model))
    return report(test, state, run.dataset, run.out_dir, run.model, config,
                  time_limited=time_limited, tested_last=tested_last, written=run.written)


def saved(run: Run) -> str:
    """'; saved PATH; continue with: ...' where this run saved a checkpoint, or where
    the one it resumed from is; '' for neither."""
    if run.good is None:
        return ""
    did = "saved" if "last.npz" in run.written else "its checkpoint is"
    return f"; {did} {run.good}; continue with: python train.py --resume {run.good}"
