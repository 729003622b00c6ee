# CrossGET on the dual encoder: token merging in the image tower (r=4 per layer), guided by
# learnable per-layer cross tokens in both towers, and the Jensen-Shannon cross-token loss
# added to the contrastive loss, (1 - w) L_itc + w L_cross with w = 0.5 (CrossGET's CLIP recipe).
_base_ = ['./clip_vit-p4_digits.py']

model = dict(
    token_merging=dict(r=4, matcher='crossget', cross_token=True),
    text_cross_token=True,
    cross_loss_weight=0.5)
