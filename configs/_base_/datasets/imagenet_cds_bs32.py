# ImageNet with the authors' two views, 32 images per GPU.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    '../cds/contrast_colour.py',
]

task_view = [
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]
contrast_view = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0)),
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
data_root = '{{$CDS_DATA_ROOT:data/imagenet}}'
train_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
