"""The data pipeline: datasets on disk (datasets.py), augmentation (augment.py) and the
batch loader that applies it (loader.py). The bundled 5,000-image Fashion-MNIST subset
lives beside them, in fashion-mnist-subset/."""
