# ResNet-50 fine-tuned on FGVC-Aircraft (100 variants) with CDS: the CUB
# config's model, recipe and two views (ImageNet-1k ResNet-50, 448 px, 8 x 8).
# Paper Table 6 (ResNet-50 fine-tuned) top-1: 87.43 (Base) -> 90.52 (CDS).
# GPU-scale: this config has not been run in this repo.
# Data (mmpretrain's FGVCAircraft): data/fgvc-aircraft-2013b/data/{images/,
# images_variant_{trainval,test}.txt, variants.txt}; trains on 'trainval',
# tests on 'test'.
# Baseline: model.mode='off' (the paper's Base), e.g. --cfg-options
# model.mode=off.
_base_ = './resnet50_cds_8xb8_cub.py'

num_classes = 100
data_root = '{{$CDS_DATA_ROOT:data/fgvc-aircraft-2013b}}'
data_preprocessor = dict(num_classes=num_classes)
model = dict(
    classifier=dict(
        head=dict(num_classes=num_classes),
        data_preprocessor=dict(num_classes=num_classes)))

train_dataloader = dict(
    dataset=dict(type='FGVCAircraft', data_root=data_root, split='trainval'))
# training uses 'trainval' (val included), so validation on the test split is
# for monitoring only and the checkpoint evaluated is the last one (no
# selection on the test split). To select on held-out data instead, train on
# split='train' and validate on split='val'.
val_dataloader = dict(
    dataset=dict(type='FGVCAircraft', data_root=data_root, split='test'))
test_dataloader = val_dataloader
