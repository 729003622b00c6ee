"""CrossGET's cross-token loss."""
import torch
import torch.nn.functional as F


def cross_token_js_loss(image_logits: torch.Tensor, text_logits: torch.Tensor) -> torch.Tensor:
    """The Jensen–Shannon-form loss that aligns the two towers' cross tokens (CrossGET,
    Shi et al., ICML 2024):

    .. math::
        L = \\tfrac12 \\left[\\mathrm{KL}(M \\,\\|\\, P) + \\mathrm{KL}(M \\,\\|\\, Q)\\right],
        \\quad P = \\mathrm{softmax}(z_v), \\; Q = \\mathrm{softmax}(z_t), \\; M = \\tfrac12 (P+Q),

    with the softmax over the embedding and KL averaged over the rows (one row per layer and
    sample). Both sides receive gradients. Note the direction, as in the reference: KL(M‖P),
    not the textbook JS divergence's KL(P‖M).
    """
    if image_logits.shape != text_logits.shape:
        raise ValueError(f'image cross tokens {tuple(image_logits.shape)} and text cross tokens '
                         f'{tuple(text_logits.shape)} must pair up (same layers and batch)')
    log_p, log_q = F.log_softmax(image_logits, dim=-1), F.log_softmax(text_logits, dim=-1)
    mean = (log_p.exp() + log_q.exp()) / 2
    return (F.kl_div(log_p, mean, reduction='batchmean')
            + F.kl_div(log_q, mean, reduction='batchmean')) / 2
