"""Benchmarks. ``python -m bench.cpu`` compares our NumPy AlexNet with PyTorch on the CPU."""
