"""Draw AlexNet from the model's own layer table: docs/images/alexnet.png.

    python scripts/draw_network.py                      # the paper preset, as in the README
    python scripts/draw_network.py --preset mini --out mini.png

Nothing in the picture is typed in by hand: every box, kernel size, output shape and
parameter count is read from ``AlexNet(preset)``, the network ``train.py`` trains, so
the picture changes when the network does. Each conv or fc layer starts a block; the
layers after it (ReLU, LRN, max-pooling, dropout) are listed under it, and the block
is drawn at the shape of its last layer's output. A grouped conv (the paper's
two-GPU split, conv2, conv4 and conv5) is drawn as two halves.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from alexnet import PRESETS, AlexNet                                    # noqa: E402
from layers.modules import (Conv2d, Dropout, Flatten, Linear, LocalResponseNorm,  # noqa: E402
                            MaxPool2d)

DEFAULT_OUT = os.path.join("docs", "images", "alexnet.png")


@dataclass
class Block:
    """One weight layer and the layers that follow it, up to the next weight layer."""
    name: str            # conv1, fc6, ...
    spec: str            # "96 kernels 11x11, stride 4"
    groups: int          # 2: the two-GPU split
    params: int
    shape: tuple         # output of the block's last layer, for one image
    ops: list = field(default_factory=list)   # "ReLU", "LRN", "max-pool 3x3/2", ...


def op_name(layer) -> str | None:
    if isinstance(layer, LocalResponseNorm):
        return "LRN"
    if isinstance(layer, MaxPool2d):
        return f"max-pool {layer.size[0]}x{layer.size[1]}/{layer.stride[0]}"
    if isinstance(layer, Dropout):
        return f"dropout {layer.p:g}"
    if isinstance(layer, Flatten):
        return None
    return type(layer).__name__          # ReLU, Tanh


def blocks(model: AlexNet) -> tuple[tuple, list]:
    """The input shape and the blocks of ``model``, from its layers and layer_shapes."""
    shapes = dict(model.layer_shapes)
    c = model.config
    found = []
    for name, layer in model.layers:
        n = sum(int(math.prod(v.shape)) for v in layer.params.values())
        if isinstance(layer, Conv2d):
            kh, kw = layer.kernel_size
            stride, pad = single(layer.stride), single(layer.pad)
            spec = f"{layer.out_channels} kernels {kh}x{kw}"
            extra = [f"stride {stride}"] if stride != 1 else []
            extra += [f"pad {pad}"] if pad else []
            spec += "\n" + ", ".join(extra) if extra else ""
            found.append(Block(name, spec, layer.groups, n, shapes[name]))
        elif isinstance(layer, Linear):
            found.append(Block(name, f"{layer.out_features} units", 1, n, shapes[name]))
        else:
            op = op_name(layer)
            if op:
                found[-1].ops.append(op)
            if not isinstance(layer, Flatten):
                found[-1].shape = shapes[name]
    return (c["in_channels"], c["input_size"], c["input_size"]), found


def single(v):
    """A stride or pad given per axis, (4, 4), as one number where both are equal."""
    if isinstance(v, (tuple, list)):
        return v[0] if len(set(v)) == 1 else "x".join(str(d) for d in v)
    return v


def shape_text(shape) -> str:
    return "x".join(str(d) for d in shape)


def draw(model: AlexNet, out: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon, Rectangle

    in_shape, bs = blocks(model)
    c = model.config
    # Box sizes: the front face grows with the map's side, the depth with
    # log2(channels), so that 227x227 and 6x6 maps, 3 and 384 channels, all read.
    face = lambda s: 0.5 + 2.3 * math.sqrt(s / max(in_shape[1], 1))          # noqa: E731
    depth = lambda ch: 0.2 + 0.2 * math.log2(max(ch, 1))                      # noqa: E731
    colour = {"input": "#d9d9d9", "conv": "#9ecae1", "gpu2": "#fdd0a2", "fc": "#a1d99b"}
    slot = 2.25                               # each block's width on the page, labels included
    base = 1.5                                # the boxes' bottom edge

    fig, ax = plt.subplots(figsize=(17, 5.4))

    def cuboid(cx, y, w, h, d, fc):
        """A box of front face w x h centred on cx, its depth d drawn up and right."""
        x = cx - (w + 0.5 * d) / 2
        dx, dy = 0.5 * d, 0.3 * d
        ax.add_patch(Polygon([(x, y + h), (x + dx, y + h + dy), (x + w + dx, y + h + dy),
                              (x + w, y + h)], closed=True, fc=fc, ec="black", lw=0.8))
        ax.add_patch(Polygon([(x + w, y), (x + w + dx, y + dy), (x + w + dx, y + h + dy),
                              (x + w, y + h)], closed=True, fc=fc, ec="black", lw=0.8))
        ax.add_patch(Rectangle((x, y), w, h, fc=fc, ec="black", lw=0.8))
        return y + h + dy                     # the top

    def labels(cx, top, above, below):
        ax.text(cx, top + 0.15, above, ha="center", va="bottom", fontsize=9)
        ax.text(cx, base - 0.2, below, ha="center", va="top", fontsize=8.5)

    cx = slot / 2
    h = face(in_shape[1])
    top = cuboid(cx, base, 0.3 * h, h, depth(in_shape[0]), colour["input"])
    labels(cx, top, "input", shape_text(in_shape))
    for b in bs:
        ax.annotate("", xy=(cx + slot * 0.72, base + 0.4), xytext=(cx + slot * 0.28, base + 0.4),
                    arrowprops=dict(arrowstyle="->", lw=0.9, color="0.35"))
        cx += slot
        below = "\n".join(b.ops) + f"\n\n{shape_text(b.shape)}\n{b.params:,} params"
        if len(b.shape) == 3:
            ch, side = b.shape[0], b.shape[1]
            h = face(side)
            if b.groups == 2:
                # the paper's two GPUs: each column holds half the kernel maps
                gap = 0.25
                half = (h - gap) / 2
                cuboid(cx, base, 0.3 * h, half, depth(ch / 2), colour["conv"])
                top = cuboid(cx, base + half + gap, 0.3 * h, half, depth(ch / 2), colour["gpu2"])
                above = f"{b.name}\n{b.spec}\n2 groups (two GPUs)"
            else:
                top = cuboid(cx, base, 0.3 * h, h, depth(ch), colour["conv"])
                above = f"{b.name}\n{b.spec}"
        else:
            top = cuboid(cx, base, 0.16, 0.6 + 0.22 * math.log2(b.shape[0]), 0.3, colour["fc"])
            above = f"{b.name}\n{b.spec}"
        labels(cx, top, above, below)
    ax.set_xlim(0, cx + slot / 2)
    ax.set_ylim(-1.0, 6.3)
    ax.axis("off")
    ax.set_title(f"AlexNet, preset '{c['preset']}': {model.num_params():,} parameters, "
                 f"drawn by scripts/draw_network.py from alexnet.py", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument("--out", default=DEFAULT_OUT, help=f"PNG to write (default {DEFAULT_OUT})")
    a = p.parse_args(argv)
    model = AlexNet(a.preset)
    draw(model, a.out)
    in_shape, bs = blocks(model)
    print(f"wrote {a.out}: {shape_text(in_shape)} -> "
          + " -> ".join(f"{b.name} {shape_text(b.shape)}" for b in bs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
