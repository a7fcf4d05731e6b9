"""The ``device`` setting of torch learners: which torch device trains them."""

from __future__ import annotations

import re

__all__ = ["DEVICE_CHOICES", "torch_device"]

#: What a ``device`` setting may be, as error messages say it.
DEVICE_CHOICES = "'cpu', 'auto' (CUDA when torch sees a CUDA device, else the CPU), 'cuda' or 'cuda:N'"


def torch_device(name: str, key: str = "device"):
    """The ``torch.device`` of a ``device`` setting.

    'auto' takes CUDA where torch sees it and the CPU elsewhere; 'cuda' or
    'cuda:N' where torch sees no such device is a ValueError naming ``key``
    (never a silent fall-back to the CPU).
    """
    if not isinstance(name, str) or not re.fullmatch(r"cpu|auto|cuda(:\d+)?", name):
        raise ValueError(f"{key}: expected {DEVICE_CHOICES}, got {name!r}")
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(f"{key}: expected {DEVICE_CHOICES} that torch can use here, got {name!r} (torch sees "
                             f"{count} CUDA device(s); 'auto' takes the CPU where there is none)")
    return device
