"""AlexNet on a GPU: our engine on CuPy against PyTorch on CUDA, in the same process.

    python -m bench.gpu                          # mini-b128, paper-g2-b128, paper-g1-b128
    python -m bench.gpu --quick                  # mini-b128 only
    python -m bench.gpu --case paper-g2-b128 --repeats 50 --tf32 on
    python -m bench.gpu --quick --layers --routes few   # each layer: host against device

Needs CuPy with a usable GPU (pip install -e '.[cuda12]') and PyTorch built for CUDA
(pip install torch). The networks, the cases, the optimizer and the check are those
of bench/cpu.py (imported from there); only where things run differs.

Per case:

1. Check. Our AlexNet moved to the GPU (net.to('cuda')) and its PyTorch twin with the
   same weights on PyTorch's device; with dropout off, logits and every parameter's
   gradient must agree (bench.cpu.check_agreement; with --tf32 on, looser tolerances,
   since TF32 rounds the products' inputs to 10 mantissa bits). A mismatch makes the
   exit status 1.
2. Training step. Forward with dropout, softmax cross-entropy, backward without the
   input's gradient, SGD with momentum and weight decay; the batch is on the device
   before the clock starts. After --warmup steps of each, --repeats steps interleaved
   (ours, torch, ours, ...); each is timed from a device synchronize to a device
   synchronize (GPU work is asynchronous). Medians in ms, and images/s from them.
3. Memory: what each framework's allocator holds at the end of the steps, which both
   allocators keep as their peak (neither gives memory back by itself):
   - ours: cupy.get_default_memory_pool().total_bytes(), its cached free blocks
     released (free_all_blocks) just before the first step;
   - torch: torch.cuda.max_memory_reserved() (empty_cache and reset_peak_memory_stats
     just before the first step); max_memory_allocated(), the peak of live tensors
     alone, is printed below the table.
   Both include the weights, gradients, momentum buffers and the batch, as held during
   the steps; neither includes the CUDA context, nor, for CuPy, the cuBLAS workspace
   (outside its pool). 'n/a' where a number cannot be read (no CUDA for torch, a pool
   without those methods, as in the NumPy stand-in tests/fake_cupy).

Each case runs once per GPU route of our ops (--routes, engine/backend.py): "few", a
few whole-array calls per op (what training uses by default), "loops", the CPU's loops
on CuPy arrays, and "kernels", the few-call route with hand-written GPU kernels for
LRN, the pooling, im2col, col2im and dropout; their rows show what each gains. A
route that fails is reported and the others still run; the line "GPU routes: few OK,
loops OK, kernels OK" says which passed, and "fastest GPU route: NAME" names the
passing route with the shortest step in the first case (the one to train on, with
ALEXNET_GPU_ROUTES=NAME). Exit status: 1 when our engine disagrees with PyTorch or
fails, 2 when CuPy, a GPU or PyTorch is missing.

--tf32 sets CUPY_TF32 before CuPy is imported and PyTorch's two allow_tf32 flags; the
header says what is in effect. --torch-device cpu (hidden) runs PyTorch on the CPU:
with PYTHONPATH=tests/fake_cupy it lets the whole script run on a machine without a GPU
(tests/test_bench_gpu.py); its timings then mean nothing.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import traceback

CASES_GPU = ["mini-b128", "paper-g2-b128", "paper-g1-b128"]
QUICK = ["mini-b128"]
# With TF32 the products round their inputs to 10 mantissa bits (relative 5e-4 each).
# conv1.w's gradient, a sum over every position of the largest maps, gathers those
# roundings into a relative difference of a few 1e-2 from PyTorch's (TF32 too), so the
# gradient tolerance is 1e-1: a route is dropped when it fails the check, and a wrong
# computation is still far outside it (one gradient tripled, as
# tests/test_bench_cpu.py breaks it, is off by 2).
TF32_LOGIT_TOL, TF32_GRAD_TOL = 1e-2, 1e-1


def parse(argv):
    """The options; nothing imported yet (the case names are checked in main)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", metavar="NAME",
                    help="a case of bench.cpu (repeatable); default: " + ", ".join(CASES_GPU))
    ap.add_argument("--quick", action="store_true", help="only " + ", ".join(QUICK))
    ap.add_argument("--repeats", type=int, default=20, help="timed steps per framework")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per framework first")
    ap.add_argument("--tf32", choices=["on", "off"], default="off",
                    help="TF32 matrix products in both (default off: exact float32)")
    ap.add_argument("--routes", default="few,loops,kernels",
                    help="our ops' GPU routes to time, comma-separated: few (a few "
                         "whole-array calls per op, the default in training), loops (the "
                         "CPU's loops on CuPy arrays), kernels (few, with hand-written "
                         "GPU kernels where an op has one); default all three")
    ap.add_argument("--layers", action="store_true",
                    help="also time each of our layers (forward, backward) and the SGD "
                         "step: host time against device time")
    ap.add_argument("--torch-device", default="cuda", help=argparse.SUPPRESS)
    return ap, ap.parse_args(argv)


def mib(n):
    return "n/a" if n is None else f"{n / 2**20:.0f}"


def cupy_pool():
    """CuPy's default memory pool, or None where it lacks what is read here."""
    import cupy
    pool = getattr(cupy, "get_default_memory_pool", lambda: None)()
    ok = all(hasattr(pool, m) for m in ("free_all_blocks", "total_bytes"))
    return pool if ok else None


def run_case(case, route, torch, torch_device, args, rows, notes):
    """One case with our ops on one of their GPU routes (engine/backend.py: 'few', a few
    whole-array calls per op, 'loops', the CPU's loops on CuPy arrays, or 'kernels')."""
    from bench.cpu import CASES, build_ours, build_torch, check_agreement, ours_step, torch_step
    from engine.backend import set_gpu_routes, synchronize, to_device
    set_gpu_routes(route)
    label = f"{case} {route}"
    _, batch, _ = CASES[case]
    net, x, y = build_ours(case)
    torch_model = build_torch(net, torch).to(torch_device)   # copies our weights on the host
    net.to("cuda")
    tolerances = (dict(logit_tol=TF32_LOGIT_TOL, grad_tol=TF32_GRAD_TOL)
                  if args.tf32 == "on" else {})
    ok, line = check_agreement(net, torch_model, torch, device=torch_device, **tolerances)
    print(f"[{label}] {line}", flush=True)
    notes.append(f"{label}: {line}")

    on_cuda = torch.device(torch_device).type == "cuda"
    torch_sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    ours = ours_step(net, to_device(x, "cuda"), to_device(y, "cuda"))
    theirs = torch_step(torch_model, x, y, torch, device=torch_device)

    def timed(step, sync):
        """(until step() returns, the host's part; until the device is done)"""
        sync()
        t = time.perf_counter()
        step()
        host = time.perf_counter() - t
        sync()
        return host, time.perf_counter() - t

    gc.collect()
    pool = cupy_pool()
    if pool is not None:
        pool.free_all_blocks()
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(torch_device)
    for _ in range(args.warmup):
        timed(ours, synchronize)
        timed(theirs, torch_sync)
    ours_times, torch_times = [], []
    for _ in range(args.repeats):
        ours_times.append(timed(ours, synchronize))
        torch_times.append(timed(theirs, torch_sync)[1])
    ours_host, ours_s = (statistics.median(v) for v in zip(*ours_times))
    torch_s = statistics.median(torch_times)
    ours_bytes = pool.total_bytes() if pool is not None else None
    torch_bytes = torch.cuda.max_memory_reserved(torch_device) if on_cuda else None
    if on_cuda:
        notes.append(f"{label}: torch max_memory_allocated (live tensors only) "
                     f"{mib(torch.cuda.max_memory_allocated(torch_device))} MiB")
    print(f"[{label}] training step: ours {ours_s * 1e3:.1f} ms ({ours_host * 1e3:.1f} ms of "
          f"it on the host before the sync), torch {torch_s * 1e3:.1f} ms, ratio "
          f"{ours_s / torch_s:.2f}", flush=True)
    rows.append((label, ours_s, ours_host, torch_s, batch / ours_s, batch / torch_s,
                 ours_bytes, torch_bytes, "OK" if ok else "MISMATCH"))
    if args.layers:
        notes.append(layer_table(label, net, to_device(x, "cuda"), args.repeats, synchronize))
        print(notes[-1], flush=True)
    del ours, theirs, net, torch_model
    gc.collect()
    return ok


def layer_table(case, net, x, repeats, synchronize):
    """Each of our layers alone, at the shapes of a training step, and the SGD step:
    median host time (until the call returns: Python and CuPy's launches) and device
    time (until the GPU is done, after a synchronize). Where the two are close, the
    layer waits on the host (many small kernels), not on the GPU."""
    from bench.cpu import LR, MOMENTUM, WEIGHT_DECAY
    from engine.backend import get_array_module
    from engine.optim import sgd_for
    xp = get_array_module(x)
    rows, h = [], x
    inputs, douts = [], []
    for _, layer in net.layers:           # each layer's input, from a training forward
        inputs.append(h)
        h = layer.forward(h, train=True)
        douts.append(xp.ones_like(h) * xp.float32(1e-3))

    def clock(call, prepare=lambda: None):
        hs, ds = [], []
        for _ in range(repeats + 1):      # the first is a warm-up
            prepare()                     # untimed: backward needs a forward's cache
            synchronize()
            t = time.perf_counter()
            call()
            hs.append(time.perf_counter() - t)
            synchronize()
            ds.append(time.perf_counter() - t)
        return statistics.median(hs[1:]), statistics.median(ds[1:])

    for i, (name, layer) in enumerate(net.layers):
        forward = lambda: layer.forward(inputs[i], train=True)  # noqa: E731
        fwd = clock(forward)
        bwd = clock(lambda: layer.backward(douts[i], need_dx=False) if i == 0
                    else layer.backward(douts[i]), prepare=forward)
        rows.append((name, *fwd, *bwd))
    opt = sgd_for(net, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)   # as train.py
    rows.append(("sgd step", *clock(lambda: opt.step(net.grads)), None, None))
    head = (f"{'layer':<10} {'fwd host':>9} {'fwd device':>10} {'bwd host':>9} "
            f"{'bwd device':>10}   (ms, medians of {repeats})")
    lines = [f"{case}: our layers one at a time", head, "-" * len(head)]
    total = ("sum", *(sum(r[k] or 0.0 for r in rows) for k in range(1, 5)))
    for name, *v in rows + [total]:
        lines.append(f"{name:<10} " + " ".join("" if s is None else f"{s * 1e3:>{w}.2f}"
                                                for s, w in zip(v, (9, 10, 9, 10))))
    return "\n".join(lines)


def table(rows):
    head = (f"{'case, GPU routes':<20} {'ours ms/step':>12} {'(host)':>7} {'torch ms/step':>13} "
            f"{'ratio':>6} {'ours img/s':>10} {'torch img/s':>11} {'ours peak MiB':>13} "
            f"{'torch peak MiB':>14}  check")
    lines = [head, "-" * len(head)]
    for (case, ours_s, ours_host, torch_s, ours_rate, torch_rate, ours_bytes, torch_bytes,
         check) in rows:
        lines.append(f"{case:<20} {ours_s * 1e3:>12.2f} {ours_host * 1e3:>7.2f} "
                     f"{torch_s * 1e3:>13.2f} {ours_s / torch_s:>6.2f} {ours_rate:>10.0f} "
                     f"{torch_rate:>11.0f} {mib(ours_bytes):>13} {mib(torch_bytes):>14}"
                     f"  {check}")
    return "\n".join(lines)


def main(argv=None):
    ap, args = parse(argv)
    if args.repeats < 1 or args.warmup < 0:
        ap.error("--repeats must be >= 1 and --warmup >= 0")
    args.routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    if not args.routes or any(r not in ("few", "loops", "kernels") for r in args.routes):
        ap.error(f"--routes takes few, loops and/or kernels, comma-separated, got "
                 f"{','.join(args.routes)!r}")
    # CuPy reads CUPY_TF32 from the environment: set it before anything imports CuPy
    # (bench.cpu imports the engine, which imports CuPy).
    if "cupy" not in sys.modules:
        os.environ["CUPY_TF32"] = "1" if args.tf32 == "on" else "0"
    import numpy as np
    from bench.cpu import CASES, exit_status, import_torch
    for case in args.case or []:
        if case not in CASES:
            ap.error(f"no case {case!r}; the cases are {', '.join(CASES)}")
    from engine.backend import GPUUnavailableError, check_device, cupy_module, gpu_status
    try:
        check_device("cuda")
    except GPUUnavailableError as e:
        print(f"bench.gpu: {e}", file=sys.stderr)
        return 2
    try:
        torch = import_torch()
    except SystemExit:                        # not installed: the environment, exit 2
        print("bench.gpu compares against PyTorch, which is not installed (pip install "
              "torch, a CUDA build)", file=sys.stderr)
        return 2
    torch_device = args.torch_device
    if torch.device(torch_device).type == "cuda" and not torch.cuda.is_available():
        print(f"bench.gpu: PyTorch {torch.__version__} sees no CUDA device (a CPU-only "
              f"build?); install a CUDA build of torch", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
    torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    cupy_tf32 = os.environ.get("CUPY_TF32", "0") not in ("", "0")
    torch_device_name = (torch.cuda.get_device_name(torch_device)
                         if torch.device(torch_device).type == "cuda" else torch_device)
    header = [
        f"AlexNet training on a GPU: ours (CuPy {cupy_module().__version__}, NumPy "
        f"{np.__version__}) vs PyTorch {torch.__version__} (CUDA {torch.version.cuda}, "
        f"cuDNN {torch.backends.cudnn.version()})",
        f"ours on {gpu_status()[1]}; PyTorch on {torch_device} ({torch_device_name})",
        f"TF32: CuPy CUPY_TF32={os.environ.get('CUPY_TF32', '')!r} "
        f"({'on' if cupy_tf32 else 'off'}); PyTorch matmul.allow_tf32="
        f"{torch.backends.cuda.matmul.allow_tf32}, cudnn.allow_tf32="
        f"{torch.backends.cudnn.allow_tf32}; cudnn.benchmark={torch.backends.cudnn.benchmark}",
        f"times: medians of {args.repeats} interleaved steps after {args.warmup} warm-up steps "
        f"each; ratio < 1 means ours is faster; peak MiB: see bench/gpu.py's docstring",
    ]
    if cupy_tf32 != (args.tf32 == "on"):
        header.append(f"WARNING: --tf32 {args.tf32} but CuPy was imported before it could be "
                      f"set: CuPy's TF32 follows CUPY_TF32 above")
    print("\n".join(header), flush=True)
    rows, notes, all_ok = [], [], True
    route_ok = dict.fromkeys(args.routes, True)
    for case in QUICK if args.quick else (args.case or CASES_GPU):
        for route in args.routes:
            try:
                ok = run_case(case, route, torch, torch_device, args, rows, notes)
            except Exception as e:            # one route failing must not hide the other
                traceback.print_exc()
                notes.append(f"{case} {route}: FAILED, {type(e).__name__}: {e}")
                ok = False
            route_ok[route] &= ok
            all_ok &= ok
    print("\n" + "\n".join(header + ["", table(rows), ""] + notes))
    # one line each, easy to find in a long report (and for a script to read)
    print("GPU routes: " + ", ".join(f"{r} {'OK' if v else 'FAILED'}"
                                      for r, v in route_ok.items()))
    fastest = fastest_route(rows, route_ok)
    if fastest:
        print(f"fastest GPU route: {fastest}")
    return exit_status(all_ok)


def fastest_route(rows, route_ok):
    """The route that passed everywhere with the shortest step in the first case timed
    ('mini-b128 few' and the like are the rows' labels), or None."""
    if not rows:
        return None
    first = rows[0][0].rsplit(" ", 1)[0]
    steps = {label.rsplit(" ", 1)[1]: ms for label, ms, *_ in rows
             if label.rsplit(" ", 1)[0] == first}
    ok = [r for r in steps if route_ok.get(r)]
    return min(ok, key=steps.get) if ok else None


if __name__ == "__main__":
    sys.exit(main())
