from .feature_loss import FeatureMSELoss
from .fgd_loss import FGDLoss
from .kd_loss import HintonKDLoss
from .mgd_loss import MGDLoss
from .nkd_loss import NKDLoss, TfNKDLoss
from .simcc_kd_loss import SimCCDistillLoss
from .uskd_loss import USKDLoss
from .vitkd_loss import ViTKDLoss

__all__ = [
    'FeatureMSELoss', 'FGDLoss', 'HintonKDLoss', 'MGDLoss', 'NKDLoss', 'SimCCDistillLoss',
    'TfNKDLoss', 'USKDLoss', 'ViTKDLoss'
]
