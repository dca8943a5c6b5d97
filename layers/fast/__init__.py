"""The fast routes of the ops, one module per op family, as CS231n keeps
``fast_layers.py`` beside ``layers.py``.

The files of layers/ read top-down: the formula, the public forward and backward in
plain array code, the naive reference. Each public function hands over to the module
here of the same name in one dispatch (``if fast.applies(...): return fast...``) where
a faster route exists, and every route here computes the readable route's numbers;
the tests hold each one to the readable route or to the naive reference. The one
route that computes them another way, Winograd's for the 3x3 convolutions
(winograd.py), agrees with im2col to float rounding and has its own gradient checks. A module
keeps side by side:

- the tuned CPU route: the batch split over the cores (engine/parallel.py), pieces
  sized for the CPU's cache, stride phases, channels-last copies, scatters and
  buffers kept from call to call;
- the few-call CuPy route, where a GPU would wait on the host's many small calls;
- the CUDA kernels of ALEXNET_GPU_ROUTES=kernels (engine/backend.py: GpuKernel).

docs/PERFORMANCE.md has the measurements behind each of them.
"""
