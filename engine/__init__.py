"""The engine: backend selection, im2col/col2im, the optimizer, gradient checking,
and the data pipeline. The ops themselves live in ``layers/``."""
