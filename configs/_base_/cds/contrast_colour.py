# The paper's colour recipe for the contrastive view (jitter 0.4/0.4/0.4/0.1
# with p=0.8, grayscale p=0.2), photometric only. Classification bases append
# it to their geometric transforms; detectors apply it alone after the shared
# geometry (so both views keep the same boxes). The scope prefix makes it
# valid in mmdet configs too.
contrast_colour = [
    dict(
        type='RandomApply',
        prob=0.8,
        transforms=[
            dict(
                type='mmpretrain.ColorJitter',
                brightness=0.4,
                contrast=0.4,
                saturation=0.4,
                hue=0.1)
        ]),
    dict(type='mmpretrain.RandomGrayscale', prob=0.2, keep_channels=True),
]
