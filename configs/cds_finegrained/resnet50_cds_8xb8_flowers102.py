# ResNet-50 fine-tuned on Oxford Flowers-102 (102 classes) with CDS: the CUB
# config's model, recipe and two views (ImageNet-1k ResNet-50, 448 px, 8 x 8).
# Paper Table 6 (ResNet-50 fine-tuned) top-1: 97.68 (Base) -> 99.39 (CDS).
# GPU-scale: this config has not been run in this repo.
# Data (mmpretrain's Flowers102): data/Flowers102/{jpg/, imagelabels.mat,
# setid.mat}; trains on 'trainval', tests on 'test'.
# Baseline: model.mode='off' (the paper's Base), e.g. --cfg-options
# model.mode=off.
_base_ = './resnet50_cds_8xb8_cub.py'

num_classes = 102
data_root = '{{$CDS_DATA_ROOT:data/Flowers102}}'
data_preprocessor = dict(num_classes=num_classes)
model = dict(
    classifier=dict(
        head=dict(num_classes=num_classes),
        data_preprocessor=dict(num_classes=num_classes)))

train_dataloader = dict(
    dataset=dict(type='Flowers102', data_root=data_root, split='trainval'))
# training uses 'trainval' (val included), so validation on the test split is
# for monitoring only and the checkpoint evaluated is the last one (no
# selection on the test split). To select on held-out data instead, train on
# split='train' and validate on split='val'.
val_dataloader = dict(
    dataset=dict(type='Flowers102', data_root=data_root, split='test'))
test_dataloader = val_dataloader
