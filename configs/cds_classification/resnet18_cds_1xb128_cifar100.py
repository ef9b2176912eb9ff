# ResNet-18 (CIFAR stem) on CIFAR-100 with CDS, the authors' recipe
# (their CIFAR/train.py): SGD 0.1, momentum 0.9, wd 5e-4, batch 128, 300
# epochs, lr / 10 at epochs 90, 180, 280. Paper Table 1: 77.45 -> 80.84.
_base_ = [
    'mmpretrain::_base_/models/resnet18_cifar.py',
    '../_base_/datasets/cifar100_cds_bs128.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
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

classifier = _base_.model
classifier.head.num_classes = 100
classifier.data_preprocessor = _base_.data_preprocessor
model = dict(
    _delete_=True,
    type='CDSClassifier',
    mode='cds',  # 'dsn' and 'off' give the matching baselines
    classifier=classifier,
    cds_head=_base_.cds_head)

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[90, 180, 280], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=10)
# the checkpoint evaluated is the last one: no selection on the test split
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=2))
randomness = dict(seed=0)
