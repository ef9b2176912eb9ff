# CPU-scale CDS on real images: Fashion-MNIST (Debian's dataset-fashion-mnist,
# see DATA notes in the README), padded to 32x32, ResNet-18 with the CIFAR
# stem at 1/4 width (16-32-64-128 channels). The paper's head and loss on all
# 4 stages. Model selection uses a val split carved from train.
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/cds/resnet_stage_cds_head.py',
    '../_base_/cds/contrast_colour.py',
]
custom_imports = dict(imports=['cds_mm'], allow_failed_imports=False)

classifier = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=16,
                  base_channels=16, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=128,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    data_preprocessor=dict(num_classes=10, mean=[72.94] * 3, std=[90.02] * 3,
                           to_rgb=False))
model = dict(
    type='CDSClassifier',
    mode='cds',  # 'dsn' and 'off' give the matching baselines
    classifier=classifier,
    cds_head=_base_.cds_head)

task_view = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]
contrast_view = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
] + _base_.contrast_colour  # gray images: only brightness/contrast act
pad = dict(type='mmcv.Pad', size=(32, 32))
train_pipeline = [
    pad,
    dict(type='MultiView', num_views=[1, 1],
         transforms=[task_view, contrast_view]),
    dict(type='PackInputs'),
]
test_pipeline = [pad, dict(type='PackInputs')]

data_root = 'data/fashion_mnist'
train_dataloader = dict(
    batch_size=128, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='FashionMNISTIDX', data_root=data_root, split='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='FashionMNISTIDX', data_root=data_root, split='val',
                 pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=256, num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='FashionMNISTIDX', data_root=data_root, split='test',
                 pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = [dict(type='Accuracy', topk=(1, )), dict(type='ECEMetric')]

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=10)
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# keep the checkpoint with the best val accuracy; the test split is read once
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='accuracy/top1',
                    rule='greater'))
randomness = dict(seed=0)
