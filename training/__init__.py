"""Training AlexNet with the paper's recipe: the library under train.py.

    from training import TrainConfig, fit
    metrics = fit(TrainConfig(dataset="fashion-mnist-subset", model="tiny", epochs=2))

config.py      TrainConfig: every setting of a run, defaults the paper's recipe
loop.py        fit() and the training loop itself (train_loop)
state.py       TrainState and EpochTally: what crosses steps, epochs and checkpoints
schedule.py    the learning rate's schedule
stop.py        Ctrl-C, SIGTERM and --time-limit
checkpoints.py saving and loading .npz checkpoints
evaluation.py  centre-crop and ten-crop testing, --eval-only, --predict
report.py      metrics.json, the console summary, curves.png and kernels.png
data.py        loading a dataset, the validation split, the crops
"""
from training.checkpoints import load_checkpoint, network_from_checkpoint, save_weights_only
from training.config import TrainConfig
from training.data import dataset_kind, load_data, test_prep
from training.evaluation import (evaluate, evaluate_checkpoint, predict_images,
                                 softmax_outputs)
from training.loop import fit, train_loop
from training.state import DivergedError, TrainingError, TrainState

__all__ = ["TrainConfig", "fit", "train_loop", "TrainState", "TrainingError",
           "DivergedError", "evaluate", "evaluate_checkpoint", "predict_images",
           "softmax_outputs", "load_checkpoint", "network_from_checkpoint",
           "save_weights_only", "load_data", "dataset_kind", "test_prep"]
