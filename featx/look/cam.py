"""Class activation maps in torch: Grad-CAM, Grad-CAM++ and Score-CAM (imports torch).

A map weighs the channels of one layer's activations ``A`` (N, K, h, w) and keeps the positive part,
``relu(sum_k w_k A_k)``, scaled to [0, 1] per image and upsampled (bilinear) to the input size. The
methods differ in the weights ``w`` of the target class ``c`` with score ``y_c`` (a logit):

* ``gradcam`` (Selvaraju et al. 2017): ``w_k = mean over (i, j) of dy_c/dA_kij``;
* ``gradcam++`` (Chattopadhay et al. 2018, eq. 19): ``w_k = sum_ij a_kij relu(g_kij)`` with
  ``a = g^2 / (2 g^2 + sum_ij(A_k) g^3)``, ``g = dy_c/dA``;
* ``scorecam`` (Wang et al. 2020): each channel, upsampled and min-max scaled, masks the input; ``w`` is
  the softmax over channels of the class score of each masked input (no gradients; K forward passes).

They follow the definitions of the ``grad-cam`` package (pytorch-grad-cam), which
``tests/look/test_explain.py`` checks them against where it is installed. Token outputs (N, L, D) of a
vision transformer are laid back on their square patch grid (leading class tokens dropped) first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OptionError

METHODS = ("gradcam", "gradcam++", "scorecam")
"""The methods, as ``featx.look.explain.METHODS`` (which checks ``--method`` without importing torch)."""


def as_maps(t: torch.Tensor) -> torch.Tensor:
    """Activations as (N, K, h, w): maps as they are, transformer tokens (N, L, D) on their patch grid."""
    if t.ndim == 4:
        return t
    if t.ndim == 3:
        n, length, dim = t.shape
        for lead in range(9):  # class / register tokens come first
            side = math.isqrt(length - lead)
            if side * side == length - lead and side > 1:
                return t[:, lead:].reshape(n, side, side, dim).permute(0, 3, 1, 2)
    raise OptionError(f"the target layer gives {tuple(t.shape)} outputs, not maps or a square grid of tokens; "
                      "this backbone cannot be explained with class activation maps")


class Capture:
    """Forward hook on ``layer``: every activation of a forward pass (several with a mirrored view), each
    kept in the graph so that its gradient can be asked for."""

    def __init__(self, layer: nn.Module):
        self.activations: list[torch.Tensor] = []
        self._handle = layer.register_forward_hook(self._hook, prepend=True)  # before a tap that stops the pass

    def _hook(self, module, inputs, output):
        self.activations.append(output)

    def clear(self) -> None:
        self.activations = []

    def remove(self) -> None:
        self._handle.remove()


def scale_maps(cam: torch.Tensor, size: tuple[int, int] | None) -> np.ndarray:
    """(N, h, w) -> (N, H, W) float32: each map shifted to 0, divided by its maximum, then upsampled to
    ``size`` (bilinear, as ``cv2.resize``)."""
    flat = cam.flatten(1)
    cam = cam - flat.min(1).values[:, None, None]
    cam = cam / (1e-7 + cam.flatten(1).max(1).values[:, None, None])
    if size is not None and tuple(cam.shape[1:]) != tuple(size):
        cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        cam = cam - cam.flatten(1).min(1).values[:, None, None]  # and again: upsampling moves the extremes
        cam = cam / (1e-7 + cam.flatten(1).max(1).values[:, None, None])
    return cam.detach().float().cpu().numpy()


def gradient_weights(method: str, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """(N, K) channel weights of Grad-CAM or Grad-CAM++ from activations and their gradients (N, K, h, w)."""
    if method == "gradcam":
        return grads.mean((2, 3))
    g2 = grads * grads
    g3 = g2 * grads
    total = acts.sum((2, 3), keepdim=True)
    aij = g2 / (2 * g2 + total * g3 + 1e-6)
    aij = torch.where(grads != 0, aij, torch.zeros_like(aij))
    return (grads.clamp(min=0) * aij).sum((2, 3))


def class_activation_maps(net: nn.Module, layer: nn.Module, x: torch.Tensor, targets: Sequence[int] | None = None,
                          *, method: str = "gradcam", mirrored: Sequence[bool] = (False,),
                          score_batch: int = 32, progress: Callable[[int], None] | None = None
                          ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(maps (N, H, W) in [0, 1], scores (N, C), targets)`` of ``net`` (normalised images -> class scores)
    on the batch ``x`` (N, 3, H, W), for the class ``targets[i]`` of each image (default: its top class).

    ``layer`` is a module inside ``net``; ``mirrored[j]`` says that its ``j``-th activation in one forward
    pass came from the mirrored image (test-time augmentation): those maps are mirrored back and added.
    Score-CAM masks come from the first (unmirrored) activation; ``progress(n)`` is told of each image done.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r}: use {', '.join(METHODS)}")
    capture = Capture(layer)
    try:
        x = x.detach().requires_grad_(method != "scorecam")  # the layer may be the input itself (pixels)
        with torch.enable_grad():
            capture.clear()
            scores = net(x)
            raw = list(capture.activations)
            acts = [as_maps(a) for a in raw]
            if not acts:
                raise OptionError("the target layer was not reached by the forward pass")
            chosen = [int(t) for t in (scores.argmax(1).tolist() if targets is None else targets)]
            index = torch.tensor(chosen, device=scores.device)
            if method == "scorecam":
                cam = _score_cam(net, capture, x, acts[0].detach(), index, score_batch, progress)
            else:
                picked = scores.gather(1, index[:, None]).sum()
                grads = [as_maps(g) for g in torch.autograd.grad(picked, raw)]
                cam = None
                for a, g, flip in zip(acts, grads, mirrored):
                    w = gradient_weights(method, a.detach(), g.detach())
                    part = torch.relu((w[:, :, None, None] * a.detach()).sum(1))
                    part = part.flip(-1) if flip else part
                    cam = part if cam is None else cam + part
                if progress is not None:
                    progress(len(x))
        maps = scale_maps(cam, tuple(x.shape[-2:]))
        return maps, scores.detach().float().cpu().numpy(), chosen
    finally:
        capture.remove()


def _score_cam(net: nn.Module, capture: Capture, x: torch.Tensor, acts: torch.Tensor, index: torch.Tensor,
               batch: int, progress: Callable[[int], None] | None) -> torch.Tensor:
    """Score-CAM: relu(sum_k softmax_k(y_c(x * mask_k)) A_k), masks = min-max scaled upsampled channels
    (made one image at a time: K masks of the input's size)."""
    weights = torch.empty(acts.shape[:2], device=x.device)
    with torch.no_grad():
        for i in range(len(x)):
            up = F.interpolate(acts[i:i + 1].float(), size=tuple(x.shape[-2:]), mode="bilinear",
                               align_corners=True)[0]
            flat = up.flatten(1)
            lo, hi = flat.min(-1).values[:, None, None], flat.max(-1).values[:, None, None]
            masks = (up - lo) / (hi - lo + 1e-8)
            for s in range(0, len(masks), batch):
                m = masks[s:s + batch]
                capture.clear()
                weights[i, s:s + len(m)] = net(x[i][None].detach() * m[:, None])[:, index[i]]
            if progress is not None:
                progress(1)
    capture.clear()
    weights = torch.softmax(weights, dim=1)
    return torch.relu((weights[:, :, None, None] * acts).sum(1))
