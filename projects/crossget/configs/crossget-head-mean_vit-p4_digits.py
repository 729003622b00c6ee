# CrossGET on the digits ViT with ToMe's metric: keys and the guide query averaged over the
# heads instead of CrossGET's full-width q and k (the option; 4x less similarity arithmetic
# with 3 heads).
_base_ = ['./crossget_vit-p4_digits.py']

model = dict(metric='head_mean')
