# Semi-supervised CDS on CIFAR-100 with 20 % of the labels (paper §5, poster
# figure: ResNet-18 presumably; 20 %: ~46 supervised-only -> ~57 CDS top-1).
# Labelled images get CE + CDS (SupCon); the other 80 % get only the SimCLR
# loss on the tapped stages (``loss_unsup_s<i>``). Each batch of 128 holds 32
# labelled + 96 unlabelled images (our choice; the paper does not say).
# ``--cfg-options model.mode=off`` trains the supervised-only baseline on the
# same labelled images and batches. The schedule keeps the supervised recipe's
# 117,300 steps (300 epochs x 391) and its lr drops. Make the split first:
#   python tools/dataset_converters/make_semi_split.py <this config>
_base_ = '../cds_classification/resnet18_cds_1xb128_cifar100.py'

model = dict(type='SemiCDSClassifier', unlabelled_weight=1.0)

train_dataloader = dict(
    persistent_workers=True,
    sampler=dict(
        _delete_=True,
        type='mmdet.MultiSourceSampler',
        batch_size=128,
        source_ratio=[1, 3]),
    dataset=dict(
        _delete_=True,
        type='SemiSplitDataset',
        fraction=0.2,
        seed=0,
        split_file='data/semi_splits/cifar100_train_20p_seed0.json',
        dataset=_base_.train_dataloader.dataset))

param_scheduler = dict(
    _delete_=True,
    type='MultiStepLR',
    by_epoch=False,
    milestones=[35190, 70380, 109480],
    gamma=0.1)
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=117300,
    val_interval=3910)
default_hooks = dict(
    logger=dict(interval=100),
    checkpoint=dict(by_epoch=False, interval=3910, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
