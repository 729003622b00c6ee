"""What mmdistill knows of one OpenMMLab codebase, and the table of the codebases it knows."""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn

SPLITS = ('train', 'val')


@dataclass
class SmokeData:
    """Generated data as a config reads it: per split (``train``, ``val``), the fields of a
    leaf dataset dict that reads it, the annotation file of the evaluators that need one
    (COCO metrics; ``None`` for the others), and the dataset types that read the generated
    files as they are: a config's leaf of one of them keeps its type, and so its metainfo (the
    133 keypoints of ``CocoWholeBodyDataset``)."""
    datasets: Dict[str, dict]
    ann_file: Optional[str] = None
    kept_types: Tuple[str, ...] = ()

    @classmethod
    def from_leaves(cls, leaf: Callable[[str], dict], ann_file: Optional[str] = None,
                    kept_types: Tuple[str, ...] = ()) -> 'SmokeData':
        """The data whose leaf dataset of each split is ``leaf(split)``."""
        return cls({split: leaf(split) for split in SPLITS}, ann_file, kept_types)

    def leaf(self, split: str, dataset: dict) -> dict:
        """The generated leaf of ``split`` in place of the config's leaf ``dataset``, of the
        leaf's own type when it is one of ``kept_types``."""
        own_type = str(dataset.get('type')).split('.')[-1]
        if own_type in self.kept_types:
            return dict(self.datasets[split], type=dataset['type'])
        return dict(self.datasets[split])


@dataclass(frozen=True)
class Codebase:
    """Everything specific to one OpenMMLab codebase, by the scope its configs name.

    A fifth codebase is one module of :mod:`mmdistill.codebases` that defines its functions,
    importing its package inside them only (``import mmdistill`` needs no codebase), and
    registers its instance with :func:`register_codebase`, plus that module's import line in
    ``mmdistill/codebases/__init__.py``.

    Args:
        scope: the registry scope of the codebase (a config's ``default_scope``): ``'mmdet'``.
        package: the distribution whose version a results file records
            (``'mmsegmentation'`` for the scope ``'mmseg'``).
        colour_flag: the attribute of its image data preprocessor that says whether it
            reverses the channel order (``'to_rgb'``, ``'_channel_conversion'``...); see
            :mod:`mmdistill.distillers.input_preparation`.
        data_sample: ``(model, image, generator) -> data sample``: a random data sample for
            one C×H×W uint8 ``image`` with the ground truth ``model``'s loss reads, drawn from
            the torch ``generator`` (see :func:`mmdistill.apis.synthetic_batch`).
        smoke_data: ``(root, num_train, num_val, (H, W), num_classes) -> SmokeData``: writes
            a small dataset under ``root`` in the codebase's own format (with
            :mod:`mmdistill.testing`) and says how a config's leaf datasets and evaluators
            read it (see :mod:`mmdistill.apis.smoke`). ``num_classes`` is the most classes
            the config's model declares (``None``: none): labels stay below it, and a data
            set whose metric maps each predicted label to a category (COCO's) lists that many.
        model_aliases: names that the codebase's hooks look up on a model for the model they
            act on; the distiller answers them with its student (mmdet's
            ``YOLOXModeSwitchHook`` switches ``model.detector.bbox_head`` when the model has a
            ``detector``).
    """
    scope: str
    package: str
    colour_flag: str
    data_sample: Callable[[nn.Module, torch.Tensor, torch.Generator], Any]
    smoke_data: Callable[[str, int, int, Tuple[int, int], Optional[int]], SmokeData]
    model_aliases: Tuple[str, ...] = ()


CODEBASES: Dict[str, Codebase] = {}


def register_codebase(codebase: Codebase) -> Codebase:
    """Add ``codebase`` to :data:`CODEBASES` under its scope and return it."""
    if codebase.scope in CODEBASES:
        raise KeyError(f"a codebase of scope '{codebase.scope}' is already registered")
    CODEBASES[codebase.scope] = codebase
    return codebase


def get_codebase(scope: Optional[str], instead: str = '') -> Codebase:
    """The codebase of ``scope``; for any other a ``ValueError`` that names the known ones,
    and ``instead`` (what to do otherwise) when given."""
    if scope not in CODEBASES:
        instead = f', or {instead}' if instead else ''
        raise ValueError(f"mmdistill knows no codebase of scope '{scope}' (known: "
                         f"{', '.join(CODEBASES)}): set default_scope in the config to one "
                         f'of them{instead}')
    return CODEBASES[scope]


def max_num_classes(model: nn.Module) -> int:
    """The largest ``num_classes`` a module of ``model`` declares (an RPN's 1 loses to the
    ROI head's 80): the range of the labels a data sample may hold."""
    declared = [m.num_classes for m in model.modules()
                if isinstance(getattr(m, 'num_classes', None), int)]
    if not declared:
        raise ValueError(f'{type(model).__name__} declares no num_classes: cannot draw labels')
    return max(declared)
