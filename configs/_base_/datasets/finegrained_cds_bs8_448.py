# Fine-grained fine-tuning data with the authors' two views (paper_spec §3),
# 8 images per GPU. View 1 is mmpretrain's fine-grained recipe (CUB: resize to
# 600, random crop 448, flip); view 2 adds SimCLR colour. It keeps the CUB
# dataset of the upstream base; each config sets its own dataset.
_base_ = 'mmpretrain::_base_/datasets/cub_bs8_448.py'

# view 1 feeds cross-entropy: the upstream train pipeline
task_view = [
    dict(type='Resize', scale=600),
    dict(type='RandomCrop', crop_size=448),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]
# view 2 feeds only the contrastive loss: the same plus SimCLR-style colour
contrast_view = [
    dict(type='Resize', scale=600),
    dict(type='RandomCrop', crop_size=448),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4,
             hue=0.1)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[1, 1],
         transforms=[task_view, contrast_view]),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
