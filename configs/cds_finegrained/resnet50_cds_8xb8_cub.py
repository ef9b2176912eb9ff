# ResNet-50 fine-tuned on CUB-200-2011 (200 classes) with CDS, from
# mmpretrain's ImageNet-1k ResNet-50 (resnet50_8xb32_in1k), with mmpretrain's
# fine-grained
# recipe (resnet50_8xb8_cub): 448 px crops, 64 images per step (8 GPUs x 8),
# SGD 0.01 nesterov, wd 5e-4, 5 warm-up epochs then cosine, 100 epochs.
# Paper Table 6 (ResNet-50 fine-tuned) top-1: 78.50 (Base) -> 82.10 (CDS).
# GPU-scale: this config has not been run in this repo.
# Data: data/CUB_200_2011/{images/, images.txt, image_class_labels.txt,
# train_test_split.txt} (mmpretrain's CUB), split 'train' / 'test'.
# Baseline: model.mode='off' is the plain fine-tuning (the paper's Base),
# 'dsn' the CE-supervised heads; e.g. --cfg-options model.mode=off.
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    '../_base_/datasets/finegrained_cds_bs8_448.py',
    'mmpretrain::_base_/schedules/cub_bs64.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/cds/resnet_stage_cds_head.py',
    '../_base_/cds/check_finite_loss.py',
]
custom_imports = dict(
    imports=['cds_mm', 'cds_mm.compat'], allow_failed_imports=False)
# not the dict inherited from mmpretrain::, which carries a _scope_ key:
# mmpretrain's browse_dataset.py passes it to UniversalVisualizer as
# keyword arguments
visualizer = dict(
    _delete_=True,
    type='UniversalVisualizer',
    vis_backends=[dict(type='LocalVisBackend')])

# loaded only when training starts (init_weights), never when building
pretrained = 'https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth'  # noqa

classifier = _base_.model
classifier.backbone.init_cfg = dict(
    type='Pretrained', checkpoint=pretrained, prefix='backbone')
classifier.head.num_classes = 200
classifier.data_preprocessor = _base_.data_preprocessor
model = dict(
    _delete_=True,
    type='CDSClassifier',
    mode='cds',  # 'off' (the paper's Base) and 'dsn' give the baselines
    classifier=classifier,
    cds_head=_base_.cds_head)

# CUB has no val split: validation runs on the test split for monitoring only,
# and the checkpoint evaluated is the last one (no selection on the test split)
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=10)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(interval=10, max_keep_ckpts=2))
randomness = dict(seed=0)
