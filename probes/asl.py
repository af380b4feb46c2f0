"""Asymmetric Loss for multi-label classification (Ridnik et al., ICCV 2021), the NIAH head probe's objective.

Why: at a decode step only a few of all heads are retrieval heads, so positives are rare; ASL
down-weights easy negatives (focusing ``gamma_neg``) and discards very easy ones (probability
shifting by ``clip``), which plain binary cross-entropy does not. The paper names ASL but gives no
settings; the defaults are the ASL authors' (``gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8``, sum
over batch and labels), as in their code and timm's ``AsymmetricLossMultiLabel``:

    L = -sum[ y (1 - p)^gamma_pos log p + (1 - y) p_m^gamma_neg log(1 - p_m) ],  p_m = max(p - clip, 0)

With all three at 0 it is binary cross-entropy with a sum reduction (tested).
Written here (a dozen lines) rather than depending on timm for one function; timm's copy is the
reference it is tested against by hand computation.
"""

from __future__ import annotations

import torch


class AsymmetricLoss(torch.nn.Module):
    """``forward(logits, targets)``: the summed asymmetric loss of multi-label logits against 0/1 targets."""

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 1.0, clip: float = 0.05, eps: float = 1e-8) -> None:
        super().__init__()
        if gamma_neg < 0 or gamma_pos < 0 or not 0 <= clip < 1:
            raise ValueError(f"dynheads: ASL needs gamma_neg, gamma_pos >= 0 and 0 <= clip < 1, got {gamma_neg}, {gamma_pos}, {clip}")
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        y = targets.to(logits.dtype)
        p = torch.sigmoid(logits)
        p_neg = 1 - p
        if self.clip > 0:
            p_neg = (p_neg + self.clip).clamp(max=1)  # = 1 - max(p - clip, 0)
        loss = y * torch.log(p.clamp(min=self.eps)) + (1 - y) * torch.log(p_neg.clamp(min=self.eps))
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            p_true = p * y + p_neg * (1 - y)
            gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
            loss = loss * torch.pow(1 - p_true, gamma)
        return -loss.sum()
