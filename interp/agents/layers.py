"""Building blocks shared by the agents: vision networks, ConvLSTM, spatial basis and Mott attention."""

from __future__ import annotations

import math

import cv2
import torch
from torch import nn
from torch.nn import functional as F

from interp.agents.conservative import add, lstm_update, proportional
from interp.hooks import HookPoint


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add(x, self.conv1(F.relu(self.conv0(F.relu(x)))))


_SAME_SIZE_FOR_OPENCV = {1: torch.uint8, 2: torch.int16, 4: torch.int32}  # element size -> a type cv2.merge copies
_OPENCV_MAX_CHANNELS = 512  # OpenCV's CV_CN_MAX


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x [N, C, H, W]`` with the same values in channels-last memory. A CPU tensor outside autograd is
    interleaved by OpenCV's ``cv2.merge``, bit for bit: for the few channels of stacked frames it is 3-4x faster than
    torch's strided copy in bfloat16 and float32, 7-11x in uint8 (``benchmarks/memory_format.py``); that copy took
    ~18% of an actor's thread in ``interp train``."""
    if x.is_contiguous(memory_format=torch.channels_last):
        return x
    same_size = _SAME_SIZE_FOR_OPENCV.get(x.element_size())
    if (x.device.type != "cpu" or x.requires_grad or same_size is None or x.numel() == 0
            or not 1 < x.shape[1] <= _OPENCV_MAX_CHANNELS):
        return x.contiguous(memory_format=torch.channels_last)
    n, c, h, w = x.shape
    planes = x.contiguous().view(same_size).numpy().reshape(n, c, h * w)
    interleaved = torch.from_numpy(cv2.merge([planes[:, i] for i in range(c)]))  # [N, H * W, C]
    return interleaved.view(x.dtype).view(n, h, w, c).permute(0, 3, 1, 2)


class ChannelsLastConvNet(nn.Module):
    """A vision network whose weights and activations are channels-last by default: on CPU, oneDNN's channels-first
    convolutions and max-pooling are slower on these shapes, in float32 and bfloat16 alike
    (``benchmarks/memory_format.py``). Its output ``[N, C, h, w]`` is channels-first again, so that flattening it
    keeps the order that checkpoints and imported weights were made with. Subclasses define :meth:`body` and call
    :meth:`set_memory_format` once their layers exist."""

    memory_format: torch.memory_format

    def set_memory_format(self, memory_format: torch.memory_format) -> None:
        """Layout of the weights and activations inside the network (``torch.channels_last`` or
        ``torch.contiguous_format``); the results are the same up to rounding."""
        self.memory_format = memory_format
        self.to(memory_format=memory_format)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = channels_last(x) if self.memory_format == torch.channels_last else x.contiguous()
        return self.body(x).contiguous()


class ImpalaResNet(ChannelsLastConvNet):
    """The large IMPALA ResNet (Espeholt et al. 2018): 3 stages of conv, max-pool /2 and two residual blocks
    (15 conv layers, ~97.7k parameters for 4 input channels). ``[N, C, 84, 84]`` -> ``[N, 32, 11, 11]``."""

    def __init__(self, in_channels: int, channels: tuple[int, ...] = (16, 32, 32)):
        super().__init__()
        stages = []
        for out_channels in channels:
            stages.append(nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                ResidualBlock(out_channels),
                ResidualBlock(out_channels),
            ))
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.out_channels = in_channels
        self.set_memory_format(torch.channels_last)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.stages(x))


class NatureCNN(ChannelsLastConvNet):
    """Mnih et al. (2015): 32@8x8/4, 64@4x4/2, 64@3x3/1, ReLU. ``[N, C, 84, 84]`` -> ``[N, 64, 7, 7]``;
    ``layers=2`` stops after the second convolution (``[N, 64, 9, 9]``), the small ConvNet of Mott et al."""

    def __init__(self, in_channels: int, layers: int = 3):
        super().__init__()
        specs = [(32, 8, 4), (64, 4, 2), (64, 3, 1)][:layers]
        modules: list[nn.Module] = []
        for out_channels, kernel, stride in specs:
            modules += [nn.Conv2d(in_channels, out_channels, kernel, stride), nn.ReLU()]
            in_channels = out_channels
        self.net = nn.Sequential(*modules)
        self.out_channels = in_channels
        self.set_memory_format(torch.channels_last)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def output_grid(vision: nn.Module, obs_shape: tuple[int, int, int]) -> tuple[int, int]:
    """``(h, w)`` of a vision network's output for one observation."""
    with torch.no_grad():
        return tuple(vision(torch.zeros(1, *obs_shape)).shape[-2:])


class LSTMCell(nn.Module):
    """LSTM cell whose four gates (order of ``nn.LSTMCell``) come from one layer over ``[x, h]`` concatenated along
    dim 1: a linear layer (LSTM) or a convolution (ConvLSTM, Shi et al. 2015). Written out so that relevance can
    pass through it (see :mod:`interp.agents.conservative`)."""

    def __init__(self, gates: nn.Module):
        super().__init__()
        self.gates = gates

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        h, c = state
        return lstm_update(self.gates(torch.cat([x, h], dim=1)), c, dim=1)


def lstm_cell(input_size: int, hidden_size: int) -> LSTMCell:
    return LSTMCell(nn.Linear(input_size + hidden_size, 4 * hidden_size))


def conv_lstm_cell(in_channels: int, hidden_channels: int, kernel_size: int = 3) -> LSTMCell:
    return LSTMCell(nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                              padding=kernel_size // 2))


def spatial_basis(height: int, width: int, even: int = 4, odd: int = 4) -> torch.Tensor:
    """Fixed Fourier spatial basis of Mott et al. (thesis eq. 3.2): ``[(even + odd)^2, h, w]``.

    Along each axis there are ``even`` cosines ``cos(pi u i / h)`` and ``odd`` sines ``sin(pi u i / h)``,
    ``u = 1..``; the channels are all outer products of a row function and a column function, row-major:
    channel ``a * (even + odd) + b`` is row function ``a`` times column function ``b``, so channel
    ``(u - 1) * 8 + (v - 1)`` is ``cos(pi u i / h) cos(pi v j / w)``.
    """

    def axis(n: int) -> torch.Tensor:
        position = torch.arange(n, dtype=torch.float32)
        cos = [torch.cos(math.pi * u * position / n) for u in range(1, even + 1)]
        sin = [torch.sin(math.pi * u * position / n) for u in range(1, odd + 1)]
        return torch.stack(cos + sin)  # [even + odd, n]

    rows, cols = axis(height), axis(width)
    return torch.einsum("ai,bj->abij", rows, cols).reshape(-1, height, width)


class SpatialAttention(nn.Module):
    """Mott et al. soft spatial attention with ``heads`` queries (thesis eqs. 3.4-3.6).

    Keys and values keep the vision layout ``[B, C, h, w]`` and the spatial basis is concatenated along channels,
    so no reshape can scramble locations. ``hook_weights`` sees ``[B, heads, h, w]``.
    """

    def __init__(self, grid: tuple[int, int], image_size: int):
        super().__init__()
        self.register_buffer("basis", spatial_basis(*grid), persistent=False)
        self.hook_basis = HookPoint("constant")
        self.hook_logits = HookPoint("attention_logits", "spatial", grid, image_size)
        self.hook_weights = HookPoint("attention", "spatial", grid, image_size)

    @property
    def basis_channels(self) -> int:
        return self.basis.shape[0]

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor):
        """queries ``[B, H, c_k + c_s]``, keys ``[B, c_k, h, w]``, values ``[B, c_v, h, w]`` ->
        answers ``[B, H, c_v + c_s]`` and weights ``[B, H, h, w]``."""
        basis = self.hook_basis(self.basis.expand(keys.shape[0], -1, -1, -1))
        keys = torch.cat([keys, basis], dim=1)
        values = torch.cat([values, basis], dim=1)
        logits = self.hook_logits(torch.einsum("bnc,bcij->bnij", queries, keys))
        batch, heads, height, width = logits.shape
        weights = torch.softmax(logits.reshape(batch, heads, -1), dim=-1).reshape(batch, heads, height, width)
        weights = self.hook_weights(weights)
        answers = proportional(lambda values: torch.einsum("bnij,bcij->bnc", weights, values), values)
        return answers, weights
