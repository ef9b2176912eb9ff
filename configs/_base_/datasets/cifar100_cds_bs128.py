# CIFAR-100 with the authors' two views, batch 128 on one GPU.
_base_ = [
    'mmpretrain::_base_/datasets/cifar100_bs16.py',
    '../cds/contrast_colour.py',
]

# view 1 feeds cross-entropy: crop with grey padding, flip, Cutout(16)
task_view = [
    dict(type='RandomCrop', crop_size=32, padding=4, pad_val=128),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='Cutout', shape=16, pad_val=(129, 124, 112), prob=1.0),
]
# view 2 feeds only the contrastive loss: SimCLR-style colour
contrast_view = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
] + _base_.contrast_colour
train_pipeline = [
    dict(
        type='MultiView',
        num_views=[1, 1],
        transforms=[task_view, contrast_view]),
    dict(type='PackInputs'),
]
# the data folder (CDS_DATA_ROOT=DIR in the environment overrides it); a
# missing folder is an error, never a download
data_root = '{{$CDS_DATA_ROOT:data/cifar100}}'
train_dataloader = dict(
    batch_size=128,
    dataset=dict(data_root=data_root, download=False, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, download=False))
test_dataloader = val_dataloader
