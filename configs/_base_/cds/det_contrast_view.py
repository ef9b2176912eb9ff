# The contrastive view for detectors: the paper's colour recipe (jitter
# 0.4/0.4/0.4/0.1 with p=0.8, grayscale p=0.2), photometric only, so both
# views keep the same boxes. Geometric transforms go before MultiBranch.
contrast_view = [
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='mmpretrain.ColorJitter', brightness=0.4, contrast=0.4,
             saturation=0.4, hue=0.1)]),
    dict(type='mmpretrain.RandomGrayscale', prob=0.2, keep_channels=True),
]
