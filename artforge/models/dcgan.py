"""DCGAN (Radford et al.): 64x64 RGB, transposed convolutions, batch norm."""

from __future__ import annotations

import torch
from torch import nn


def init_weights(module: nn.Module) -> None:
    """The paper's initialisation: N(0, 0.02) convolutions, N(1, 0.02) BN scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """latent [N, nz] -> image [N, 3, 64, 64] in [-1, 1] (tanh)."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3):
        super().__init__()
        self.nz = nz

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            *up(ngf * 8, ngf * 4), *up(ngf * 4, ngf * 2), *up(ngf * 2, ngf),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.nz, 1, 1))


class Discriminator(nn.Module):
    """image [N, 3, 64, 64] in [-1, 1] -> real/fake logit [N].

    spectral_norm: every convolution is spectrally normalised (Miyato et al.
    2018), which bounds D's Lipschitz constant; batch norm is then left out of
    D, as in their DCGAN-style discriminator, because its per-batch statistics
    undo the bound and it is not needed for stability any more.
    """

    def __init__(self, ndf: int = 64, nc: int = 3, spectral_norm: bool = False):
        super().__init__()

        def conv(cin: int, cout: int, stride: int, padding: int) -> nn.Module:
            layer = nn.Conv2d(cin, cout, 4, stride, padding, bias=spectral_norm)
            return nn.utils.parametrizations.spectral_norm(layer) if spectral_norm else layer

        def down(cin: int, cout: int) -> list[nn.Module]:
            norm: list[nn.Module] = [] if spectral_norm else [nn.BatchNorm2d(cout)]
            return [conv(cin, cout, 2, 1), *norm, nn.LeakyReLU(0.2, True)]

        self.net = nn.Sequential(
            conv(nc, ndf, 2, 1), nn.LeakyReLU(0.2, True),
            *down(ndf, ndf * 2), *down(ndf * 2, ndf * 4), *down(ndf * 4, ndf * 8),
            conv(ndf * 8, 1, 1, 0),
        )
        if not spectral_norm:
            self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()
