# CPU-scale semi-supervised CDS on Fashion-MNIST: 20 % of the training images
# keep their labels (class-stratified, split seed 0), the rest train with the
# label-free contrastive loss only. Every batch holds 32 labelled + 96
# unlabelled images (mmdet's MultiSourceSampler, infinite, hence an
# iteration-based loop). model.mode='off' is the supervised-only baseline on
# the same labelled images and batches. Make the split file first:
#   python tools/dataset_converters/make_semi_split.py <this config>
_base_ = './resnet18-w16_cds_1xb128_fashionmnist.py'

# CDS at the base config's weight, 0.3 (chosen on val for the supervised
# ResNet-18); the 4-epoch results of benchmarks/README.md ran at 0.1
model = dict(type='SemiCDSClassifier', unlabelled_weight=1.0)

train_dataloader = dict(
    _delete_=True,
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(
        type='mmdet.MultiSourceSampler', batch_size=128, source_ratio=[1, 3]),
    dataset=dict(
        type='SemiSplitDataset',
        fraction=0.2,
        seed=0,
        split_file='data/semi_splits/fashionmnist_train_20p_seed0.json',
        dataset=dict(
            type='FashionMNISTIDX',
            data_root=_base_.data_root,
            split='train',
            pipeline=_base_.train_pipeline)))

param_scheduler = dict(
    _delete_=True, type='CosineAnnealingLR', by_epoch=False, T_max=2000)
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=2000, val_interval=200)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(
        by_epoch=False,
        interval=200,
        max_keep_ckpts=1,
        save_best='accuracy/top1',
        rule='greater'))
log_processor = dict(by_epoch=False)
