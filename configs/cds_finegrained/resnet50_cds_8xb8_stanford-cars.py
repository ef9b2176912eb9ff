# ResNet-50 fine-tuned on Stanford Cars (196 classes) with CDS: the CUB
# config's model, recipe and two views (ImageNet-1k ResNet-50, 448 px, 8 GPUs x
# 8). Paper Table 6 (ResNet-50 fine-tuned) top-1: 90.25 (Base) -> 92.90 (CDS).
# GPU-scale: this config has not been run in this repo.
# Data (mmpretrain's StanfordCars): data/Stanford_Cars/{car_ims/,
# cars_annos.mat} or data/Stanford_Cars/{cars_train/, cars_test/, devkit/},
# split 'train'/'test'.
# Baseline: model.mode='off' (the paper's Base), e.g. --cfg-options
# model.mode=off.
_base_ = './resnet50_cds_8xb8_cub.py'

num_classes = 196
data_root = '{{$CDS_DATA_ROOT:data/Stanford_Cars}}'
data_preprocessor = dict(num_classes=num_classes)
model = dict(
    classifier=dict(
        head=dict(num_classes=num_classes),
        data_preprocessor=dict(num_classes=num_classes)))

train_dataloader = dict(
    dataset=dict(type='StanfordCars', data_root=data_root, split='train'))
# no val split: validation on the test split is for monitoring only, and the
# checkpoint evaluated is the last one (no selection on the test split)
val_dataloader = dict(
    dataset=dict(type='StanfordCars', data_root=data_root, split='test'))
test_dataloader = val_dataloader
