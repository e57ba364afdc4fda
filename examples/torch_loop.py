"""latentcheck inside a plain PyTorch evaluation loop (issue 18).

Run: python examples/torch_loop.py  (needs torch; CPU is enough). Prints the metrics a
tracker would receive (wandb.log / mlflow.log_metrics / accelerator.log take the dict
as is). Under torch.distributed, give each rank's Stream rank=dist.get_rank() and
world_size=dist.get_world_size() and call latentcheck.stream.gather(stream) on every rank.
"""

from __future__ import annotations

import json

import torch

import latentcheck as lc


class Encoder(torch.nn.Module):
    """A stand-in VAE encoder: conv latents (N, 4, 8, 8) with a mean and a log-variance."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=4, stride=4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mu, logvar) of q(z|x), each (N, 4, 8, 8)."""
        mu, logvar = self.conv(x).chunk(2, dim=1)
        return mu, logvar.clamp(-6, 2)


def main() -> dict[str, float]:
    """Encode a validation set batch by batch; return the metrics of both streams."""
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = Encoder().to(device).eval()
    data = torch.utils.data.TensorDataset(torch.randn(96, 3, 32, 32))
    loader = torch.utils.data.DataLoader(data, batch_size=20)  # the last batch has 16
    latents = lc.Stream(seed=0, channel_axis=1)  # (N, C, H, W): channels are dimensions
    posterior = lc.Stream(seed=0)
    with torch.no_grad():
        for (x,) in loader:
            mu, logvar = model(x.to(device))
            latents.update(mu)  # a tensor on any device: moved to the CPU
            posterior.update_posterior(mu, logvar)
    report = latents.report()
    metrics = report.to_metrics(prefix="val/latents/")
    metrics.update(posterior.report().to_metrics(prefix="val/posterior_z/"))
    return metrics


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
