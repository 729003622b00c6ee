"""A small CLIP-style image–text dual encoder built from mmpretrain's own blocks.

mmpretrain's ``CLIP`` needs the ``transformers`` package (not installable beside this stack,
see the project README), so this model assembles the same two towers from parts that import
without it: mmpretrain's ``VisionTransformer`` for images and
``mmpretrain.models.utils.clip_generator_helper.Transformer`` (CLIP's causal text transformer)
for text. Texts are a fixed list of class prompts ("a photo of the digit seven"), so the model
trains on an mmpretrain classification dataset and predicts like a classifier (image→text
retrieval among the prompts), with mmpretrain's ``Accuracy`` as evaluator.

Other projects reuse it: ``from projects.crossget.crossget.dual_encoder import
ImageTextDualEncoder`` (registered as ``mmdistill.ImageTextDualEncoder``).
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmpretrain.models.utils.clip_generator_helper import LayerNorm, Transformer
from torch import nn

from mmdistill.registry import MODELS
from mmdistill.utils import build_model_in_scope
from .losses import cross_token_js_loss
from .token_merging import apply_token_merging


class PromptTokenizer:
    """Word-level tokens for a fixed list of prompts: ``[SOT] words... [EOT] [PAD]...``.

    Id 0 pads, 1 starts, 2 ends a text; words get ids from 3 in sorted order. A real CLIP uses
    BPE over a large vocabulary; for a fixed prompt list whole words say the same.
    """
    PAD, SOT, EOT = 0, 1, 2

    def __init__(self, prompts: Sequence[str]):
        words = sorted({word for prompt in prompts for word in prompt.lower().split()})
        self.vocab = {word: index + 3 for index, word in enumerate(words)}
        self.context_length = max(len(prompt.split()) for prompt in prompts) + 2

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 3

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = torch.full((len(prompts), self.context_length), self.PAD, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids = [self.SOT] + [self.vocab[word] for word in prompt.lower().split()] + [self.EOT]
            tokens[row, :len(ids)] = torch.tensor(ids)
        return tokens


class TextTower(nn.Module):
    """CLIP's text encoder: token + position embeddings, mmpretrain's CLIP ``Transformer``
    (causal), final LayerNorm; a text's feature is its EOT token's.

    With ``cross_token=True`` a slot after the text holds CrossGET's text cross token: before
    layer i it is set to ``stopgrad(EOT token) + cross_tokens[i]`` (zeros at start). Under the
    causal mask nothing else attends to it, so it changes no text feature.
    """

    def __init__(self, vocab_size: int, context_length: int, width: int, layers: int,
                 heads: int, cross_token: bool = False):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        length = context_length + int(cross_token)
        causal = torch.full((length, length), float('-inf')).triu_(1)
        self.transformer = Transformer(width, layers, heads, attn_mask=causal)
        self.ln_final = LayerNorm(width)
        self.cross_token = cross_token
        self.cross_states: List[torch.Tensor] = []
        if cross_token:
            self.cross_tokens = nn.Parameter(torch.zeros(layers, width))
            for index, block in enumerate(self.transformer.resblocks):
                block.register_forward_pre_hook(self._cross_token_hook(index))
        self._eot: Optional[torch.Tensor] = None

    def _cross_token_hook(self, index: int):
        def set_cross_token(block, args):
            x = args[0]  # L×B×C
            cross = x[self._eot, torch.arange(x.shape[1])].detach() + self.cross_tokens[index]
            self.cross_states.append(cross)
            return (torch.cat([x[:-1], cross[None]], dim=0), ) + args[1:]
        return set_cross_token

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B×T) -> normalised EOT features (B×C) before projection."""
        self._eot = (tokens == PromptTokenizer.EOT).int().argmax(dim=-1)
        self.cross_states = []
        x = self.token_embedding(tokens) + self.positional_embedding
        if self.cross_token:
            x = torch.cat([x, x[:, :1]], dim=1)  # the slot; the first hook fills it
        x = self.transformer(x.permute(1, 0, 2))[0].permute(1, 0, 2)
        return self.ln_final(x[torch.arange(x.shape[0]), self._eot])


@MODELS.register_module()
class ImageTextDualEncoder(BaseModel):
    """A CLIP-style dual encoder (Radford et al., "Learning Transferable Visual Models From
    Natural Language Supervision", ICML 2021) scoring images against class prompts.

    Image i and text j meet in :math:`\\ell_{ij} = e^{t} \\cos(W_v f_v(x_i), W_t f_t(y_j))`;
    training minimises the symmetric contrastive loss over the batch, where every prompt of the
    image's class is a positive (targets :math:`[y_i = y_j] / \\sum_j [y_i = y_j]`):

    .. math:: L_{itc} = \\tfrac12 [CE(\\ell, T) + CE(\\ell^\\top, T)].

    With CrossGET (``token_merging`` with ``cross_token=True``, and ``text_cross_token``) both
    towers carry per-layer cross tokens and the loss is :math:`(1-w) L_{itc} + w L_{cross}`
    with :math:`L_{cross}` the Jensen–Shannon cross-token loss (:func:`cross_token_js_loss`).

    Args:
        vision: an mmpretrain ``VisionTransformer`` dict (``out_type='cls_token'``).
        text: ``dict(width, layers, heads)`` of the text transformer.
        class_prompts: one prompt per class, in label order.
        embed_dims: dimensions of the joint embedding.
        token_merging: arguments of :func:`~.token_merging.apply_token_merging` for the vision
            tower (``r``, ``matcher``, ``cross_token``), or ``None``.
        text_cross_token: give the text tower cross tokens too (CrossGET's cross guidance).
        cross_loss_weight: ``w`` above (0.5 in CrossGET's CLIP recipe).
        data_preprocessor: an mmpretrain ``ClsDataPreprocessor`` dict.
    """

    def __init__(self,
                 vision: dict,
                 text: dict,
                 class_prompts: Sequence[str],
                 embed_dims: int = 64,
                 token_merging: Optional[dict] = None,
                 text_cross_token: bool = False,
                 cross_loss_weight: float = 0.5,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'mmpretrain.ClsDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.vision = build_model_in_scope(vision, 'mmpretrain')
        if self.vision.out_type != 'cls_token' or not self.vision.final_norm:
            raise ValueError("the vision tower must be a VisionTransformer with "
                             "out_type='cls_token' and final_norm=True (CLIP's image feature)")
        vision_cross = bool(token_merging and token_merging.get('cross_token'))
        if vision_cross != text_cross_token:
            raise ValueError('cross tokens go in both towers or in neither: set '
                             'token_merging.cross_token and text_cross_token alike')
        if token_merging is not None:
            apply_token_merging(self.vision, **token_merging)
        self.tokenizer = PromptTokenizer(class_prompts)
        self.register_buffer('prompt_tokens', self.tokenizer(class_prompts), persistent=False)
        self.text = TextTower(self.tokenizer.vocab_size, self.tokenizer.context_length,
                              cross_token=text_cross_token, **text)
        if vision_cross and len(self.vision.layers) != self.text.transformer.layers:
            raise ValueError('cross tokens pair the layers of the two towers: give them the '
                             f'same depth (vision {len(self.vision.layers)}, text '
                             f'{self.text.transformer.layers})')
        self.image_projection = nn.Linear(self.vision.embed_dims, embed_dims, bias=False)
        self.text_projection = nn.Linear(text['width'], embed_dims, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.cross_loss_weight = cross_loss_weight if vision_cross else 0.

    @property
    def with_cross_tokens(self) -> bool:
        return self.text.cross_token

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_projection(self.vision(images)[-1]), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_projection(self.text(tokens)), dim=-1)

    def logits(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        scale = self.logit_scale.clamp(max=math.log(100)).exp()
        return scale * self.encode_image(images) @ self.encode_text(tokens).t()

    def cross_token_logits(self):
        """Each layer's cross tokens of both towers, through their tower's final LayerNorm and
        projection with those detached (L·B×E each): gradients reach only the cross tokens."""
        def project(states, norm, projection):
            x = F.layer_norm(torch.cat(states), norm.normalized_shape, norm.weight.detach(),
                             norm.bias.detach(), norm.eps)
            return F.linear(x, projection.weight.detach())
        return (project(self.vision.token_merging.cross_states, self.vision.ln1,
                        self.image_projection),
                project(self.text.cross_states, self.text.ln_final, self.text_projection))

    def forward(self, inputs: torch.Tensor, data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        if mode == 'tensor':
            return self.logits(inputs, self.prompt_tokens)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        raise RuntimeError(f"invalid mode '{mode}': use 'loss', 'predict' or 'tensor'")

    def loss(self, inputs: torch.Tensor, data_samples: list) -> Dict[str, torch.Tensor]:
        labels = torch.cat([sample.gt_label for sample in data_samples]).to(inputs.device)
        logits = self.logits(inputs, self.prompt_tokens[labels])
        same_class = (labels[:, None] == labels[None]).float()
        targets = same_class / same_class.sum(dim=1, keepdim=True)
        itc = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
        if not self.with_cross_tokens:
            return dict(loss_itc=itc)
        w = self.cross_loss_weight
        return dict(loss_itc=(1 - w) * itc,
                    loss_cross=w * cross_token_js_loss(*self.cross_token_logits()))

    def predict(self, inputs: torch.Tensor, data_samples: Optional[list] = None) -> list:
        from mmpretrain.structures import DataSample
        scores = self.logits(inputs, self.prompt_tokens).softmax(dim=-1)
        data_samples = data_samples or [DataSample() for _ in range(len(scores))]
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score).set_pred_label(score.argmax(keepdim=True))
        return data_samples
