# Fine-grained fine-tuning data with the authors' two views,
# 8 images per GPU. View 1 is mmpretrain's fine-grained recipe (CUB: resize to
# 600, random crop 448, flip); view 2 adds SimCLR colour. It keeps the CUB
# dataset of the upstream base; each config sets its own dataset.
_base_ = [
    'mmpretrain::_base_/datasets/cub_bs8_448.py',
    '../cds/contrast_colour.py',
]

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
] + _base_.contrast_colour
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiView',
        num_views=[1, 1],
        transforms=[task_view, contrast_view]),
    dict(type='PackInputs'),
]
# the data folder; CDS_DATA_ROOT=DIR in the environment overrides it
data_root = '{{$CDS_DATA_ROOT:data/CUB_200_2011}}'
train_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
