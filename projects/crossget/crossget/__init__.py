"""CrossGET (Cross-Guided Ensemble of Tokens, ICML 2024) token merging for mmpretrain ViTs.

Configs bring it in with ``custom_imports = dict(imports=['projects.crossget.crossget'])``
(run from the repository root, or with it on ``PYTHONPATH``).
"""
from .dual_encoder import ImageTextDualEncoder, PromptTokenizer
from .losses import cross_token_js_loss
from .matching import (MATCHERS, MergePlan, bipartite_soft_matching,
                       complete_graph_soft_matching, merge_tokens)
from .models import token_merging_model
from .token_merging import TokenMergingState, apply_token_merging

__all__ = [
    'ImageTextDualEncoder', 'MATCHERS', 'MergePlan', 'PromptTokenizer', 'TokenMergingState',
    'apply_token_merging', 'bipartite_soft_matching', 'complete_graph_soft_matching',
    'cross_token_js_loss', 'merge_tokens', 'token_merging_model'
]
