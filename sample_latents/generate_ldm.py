"""Encode crops of real photographs with two tiny latent-diffusion encoders (issue 21).

The encoders are the distilled "tiny autoencoders" of the ``madebyollin/taesd`` repository
(MIT licence), commit ``5cccb12``:

- ``taef2_encoder.pth``: TAEF2, a distillation of the FLUX.2 VAE encoder; 32 channels at
  1/8 of the image resolution.
- ``taesana_encoder.pth``: TAESana, a distillation of Sana's DC-AE f32c32; 32 channels at
  1/32 of the resolution.

The modules below are written from the checkpoints' parameter names and shapes (a
``torch.nn.Sequential`` whose indices are the first component of every key) and loaded with
``torch.load(..., weights_only=True)`` and ``load_state_dict(strict=True)``, so a missing,
extra or mis-shaped parameter stops the script. What the names cannot tell (activations,
strides, padding, the order of operations) follows the ``taesd.py`` of the same commit;
``--reference DIR/taesd.py`` runs that file's modules on the same crops and prints the
largest difference, and the TAEF2 decoder's reconstruction PSNR checks the TAEF2 pair end to
end (README.md gives the figures).

The photographs are the RGB photos shipped inside the wheels of scikit-image
(``skimage/data``) and scikit-learn (``sklearn/datasets/images``). Each is cut into
non-overlapping 256 x 256 crops at its native resolution (no resampling; the grid of crops is
centred on the photo), in the order of ``PHOTOS`` and row-major within a photo. The TAESD
convention for the input is RGB in [0, 1]: uint8 / 255, no other normalisation.

Outputs, in ``sample_latents/`` unless ``--out`` says otherwise: ``ldm_taef2.npy`` of shape
(N, 32, 32, 32) and ``ldm_taesana.npy`` of shape (N, 32, 8, 8), float16 (the checkpoints'
own precision; the encoders run in float32 and the output is rounded once).

torch (``pip install -e '.[generate]'``), Pillow, scikit-image and scikit-learn are needed
only here, never by latentcheck or its tests::

    python sample_latents/generate_ldm.py --weights DIR [--reference DIR/taesd.py]

where ``DIR`` holds ``taef2_encoder.pth``, ``taesana_encoder.pth`` and (optionally, for the
PSNR check) ``taef2_decoder.pth`` from the repository at that commit.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch import nn

OUT_DIR = Path(__file__).resolve().parent
CROP = 256  # pixels; a multiple of 32 so that both encoders tile it exactly
N_THREADS = 1
# (package, path inside the package): every RGB photograph the two wheels ship.
PHOTOS: tuple[tuple[str, str], ...] = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/rocket.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
)
ENCODERS = (("taef2", "taef2_encoder.pth"), ("taesana", "taesana_encoder.pth"))


# --------------------------------------------------------------------------------------------
# Modules. Key names: "<i>.weight" is a plain conv at index i of the Sequential;
# "<i>.conv.{0,2,4}.weight" the three 3x3 convs of a residual block; "<i>.skip.weight" its 1x1
# projection (absent: every block here is 64 -> 64); "<i>.pool.{0,1,3}" the TAEF2 blocks'
# global branch (1x1 conv 64 -> 256 without bias, GroupNorm(4, 256), ReLU, 1x1 conv back).


def conv3(n_in: int, n_out: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """A 3x3 convolution with zero padding 1 (the shape-preserving conv of TAESD)."""
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class Block(nn.Module):
    """TAESD's residual block: ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x), 64 channels.

    With ``pooled=True`` (TAEF2's middle blocks) a 1x1-conv / GroupNorm branch is added to
    the input first: x <- x + W2 ReLU(GN(W1 x)).
    """

    def __init__(self, n: int = 64, *, pooled: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv3(n, n), nn.ReLU(), conv3(n, n), nn.ReLU(), conv3(n, n))
        self.pool: nn.Module | None = None
        if pooled:
            self.pool = nn.Sequential(
                nn.Conv2d(n, 4 * n, 1, bias=False),
                nn.GroupNorm(4, 4 * n),
                nn.ReLU(),
                nn.Conv2d(4 * n, n, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + x)


def taef2_encoder() -> nn.Sequential:
    """TAEF2 encoder: three stride-2 convs (1/8), pooled blocks at the lowest resolution."""
    return nn.Sequential(
        conv3(3, 64), Block(),  # 0, 1
        conv3(64, 64, stride=2, bias=False), Block(), Block(), Block(),  # 2-5
        conv3(64, 64, stride=2, bias=False), Block(), Block(), Block(),  # 6-9
        conv3(64, 64, stride=2, bias=False),  # 10
        Block(pooled=True), Block(pooled=True), Block(pooled=True),  # 11-13
        conv3(64, 32),  # 14
    )  # fmt: skip


def taesana_encoder() -> nn.Sequential:
    """TAESana encoder: five stride-2 convs (1/32); indices 1 and 3 are ReLUs."""
    return nn.Sequential(
        conv3(3, 32, stride=2), nn.ReLU(), conv3(32, 64, stride=2), nn.ReLU(), Block(),  # 0-4
        conv3(64, 64, stride=2, bias=False), Block(), Block(), Block(),  # 5-8
        conv3(64, 64, stride=2, bias=False), Block(), Block(), Block(),  # 9-12
        conv3(64, 64, stride=2, bias=False), Block(), Block(), Block(),  # 13-16
        conv3(64, 32),  # 17
    )  # fmt: skip


class Clamp(nn.Module):
    """Soft clamp of the latents to (-3, 3): 3 tanh(x / 3), the decoders' first layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def taef2_decoder() -> nn.Sequential:
    """TAEF2 decoder, used only to check the encoder by reconstruction PSNR."""
    return nn.Sequential(
        Clamp(), conv3(32, 64), nn.ReLU(),  # 0-2
        Block(pooled=True), Block(pooled=True), Block(pooled=True),  # 3-5
        nn.Upsample(scale_factor=2), conv3(64, 64, bias=False),  # 6, 7
        Block(), Block(), Block(), nn.Upsample(scale_factor=2), conv3(64, 64, bias=False),
        Block(), Block(), Block(), nn.Upsample(scale_factor=2), conv3(64, 64, bias=False),
        Block(), conv3(64, 3),  # 18, 19
    )  # fmt: skip


BUILDERS = {
    "taef2_encoder.pth": taef2_encoder,
    "taesana_encoder.pth": taesana_encoder,
    "taef2_decoder.pth": taef2_decoder,
}


def load(weights: Path) -> nn.Sequential:
    """Build the module for a checkpoint file and load it strictly (float32 parameters)."""
    module = BUILDERS[weights.name]()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    module.load_state_dict(state, strict=True)  # copies float16 values into float32
    return module.eval()


# --------------------------------------------------------------------------------------------
# Photos and crops.


def photo_path(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        sys.exit(f"error: {package} is not installed; the photos ship inside its wheel")
    return Path(spec.origin).parent / relative


def crops(image: NDArray[np.uint8]) -> list[NDArray[np.uint8]]:
    """Non-overlapping CROP x CROP tiles on a grid centred on the image, row-major."""
    h, w = image.shape[:2]
    rows, cols = h // CROP, w // CROP
    top, left = (h - rows * CROP) // 2, (w - cols * CROP) // 2
    return [
        image[top + i * CROP : top + (i + 1) * CROP, left + j * CROP : left + (j + 1) * CROP]
        for i in range(rows)
        for j in range(cols)
    ]


def load_crops() -> tuple[NDArray[np.float32], list[tuple[str, int, str]]]:
    """All crops as float32 (N, 3, CROP, CROP) in [0, 1]; and (photo, crops, sha256) rows."""
    tiles: list[NDArray[np.uint8]] = []
    table = []
    for package, relative in PHOTOS:
        path = photo_path(package, relative)
        data = path.read_bytes()
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        new = crops(rgb)
        tiles += new
        name = f"{package}/{relative}"
        table.append((name, len(new), hashlib.sha256(data).hexdigest()))
        print(f"{name}: {rgb.shape[1]} x {rgb.shape[0]} px, {len(new)} crops, {len(data)} B")
    x = np.stack(tiles).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return x, table


# --------------------------------------------------------------------------------------------
# Checks.


def psnr(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float64]:
    """Per-image PSNR in dB of images in [0, 1]: 10 log10(1 / MSE)."""
    mse = ((a.astype(np.float64) - b) ** 2).reshape(len(a), -1).mean(axis=1)
    return np.asarray(10 * np.log10(1.0 / mse))


def reference_outputs(taesd_py: Path, weights: Path, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Encode with the modules of the repository's own taesd.py (independent of ours)."""
    spec = importlib.util.spec_from_file_location("taesd_reference", taesd_py)
    assert spec is not None and spec.loader is not None
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    out: dict[str, np.ndarray] = {}
    for name, file in ENCODERS:
        model = ref.TAESD(encoder_path=weights / file, decoder_path=None)
        with torch.no_grad():
            out[name] = model.encoder(x).numpy()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="folder of the .pth files")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--reference", type=Path, help="taesd.py of the same commit")
    args = parser.parse_args(argv)

    torch.set_num_threads(N_THREADS)
    torch.use_deterministic_algorithms(True)
    print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}")
    for file in [f for _, f in ENCODERS] + ["taef2_decoder.pth"]:
        path = args.weights / file
        if path.exists():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            print(f"{file}: {path.stat().st_size} B, sha256 {digest}")

    x_np, _ = load_crops()
    x = torch.from_numpy(x_np)
    print(f"{len(x_np)} crops of {CROP} x {CROP}")
    latents: dict[str, np.ndarray] = {}
    for name, file in ENCODERS:
        start = time.perf_counter()
        with torch.no_grad():
            z = load(args.weights / file)(x).numpy()
        latents[name] = z
        z16 = z.astype(np.float16)
        out = args.out / f"ldm_{name}.npy"
        np.save(out, z16)
        rounding = np.abs(z16.astype(np.float32) - z).max()
        print(
            f"{out.name}: shape {z16.shape}, {out.stat().st_size} B, "
            f"sha256(array) {hashlib.sha256(z16.tobytes()).hexdigest()}, "
            f"float16 rounding <= {rounding:.2g}, {time.perf_counter() - start:.1f} s"
        )

    decoder_path = args.weights / "taef2_decoder.pth"
    if decoder_path.exists():
        decoder = load(decoder_path)
        for label, z in (
            ("float32", latents["taef2"]),
            ("float16", latents["taef2"].astype(np.float16).astype(np.float32)),
        ):
            with torch.no_grad():
                rec = decoder(torch.from_numpy(z)).clamp(0, 1).numpy()
            p = psnr(rec, x_np)
            print(
                f"TAEF2 reconstruction PSNR from {label} latents: mean {p.mean():.2f} dB, "
                f"min {p.min():.2f}, max {p.max():.2f} over {len(p)} crops"
            )
        # Negative control: a wrong channel order must ruin the reconstruction.
        with torch.no_grad():
            rolled = torch.from_numpy(np.roll(latents["taef2"], 1, axis=1))
            rec = decoder(rolled).clamp(0, 1).numpy()
        print(f"control: channels rolled by one, PSNR mean {psnr(rec, x_np).mean():.2f} dB")
        # For scale: the PSNR of a blurred copy (2x2 box average, i.e. half resolution)
        pooled = torch.nn.functional.avg_pool2d(x, 2)
        blur = torch.nn.functional.interpolate(pooled, scale_factor=2, mode="nearest").numpy()
        print(f"baseline: 2x2 block average, PSNR mean {psnr(blur, x_np).mean():.2f} dB")
    else:
        print("taef2_decoder.pth absent: no reconstruction check")

    if args.reference is not None:
        ref = reference_outputs(args.reference, args.weights, x)
        for name, z in latents.items():
            diff = np.abs(ref[name] - z).max()
            print(f"{name}: max |ours - taesd.py| = {diff:.3g} (scale of z: {np.abs(z).max():.3g})")
    if not math.isfinite(float(np.abs(latents["taef2"]).max())):
        sys.exit("error: non-finite latents")


if __name__ == "__main__":
    main()
