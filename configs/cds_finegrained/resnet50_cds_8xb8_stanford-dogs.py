# ResNet-50 fine-tuned on Stanford Dogs (120 classes) with CDS: the CUB
# config's model, recipe and two views (ImageNet-1k ResNet-50, 448 px, 8 x 8).
# Paper Table 6 (ResNet-50 fine-tuned) top-1: 76.47 (Base) -> 80.99 (CDS).
# GPU-scale: this config has not been run in this repo.
# Baseline: model.mode='off' (the paper's Base), e.g. --cfg-options
# model.mode=off.
# Data: mmpretrain has no Stanford Dogs class, so this is a CustomDataset with
# annotation files: data/StanfordDogs/{Images/<wnid>-<breed>/*.jpg,
# train_list.mat, test_list.mat} (images.tar and lists.tar of the official
# site), plus train.txt and test.txt ("<wnid>-<breed>/<file>.jpg <label>",
# labels 0-119) made from the official lists with:
#   python -c "import scipy.io as sio
#   for s in ('train', 'test'):
#       m = sio.loadmat(f'data/StanfordDogs/{s}_list.mat')
#       open(f'data/StanfordDogs/{s}.txt', 'w').writelines(
#           f'{f[0][0]} {int(l[0]) - 1}\n'
#           for f, l in zip(m['file_list'], m['labels']))"
_base_ = './resnet50_cds_8xb8_cub.py'

num_classes = 120
data_root = '{{$CDS_DATA_ROOT:data/StanfordDogs}}'
data_preprocessor = dict(num_classes=num_classes)
model = dict(
    classifier=dict(
        head=dict(num_classes=num_classes),
        data_preprocessor=dict(num_classes=num_classes)))

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        ann_file='train.txt',
        data_prefix='Images',
        pipeline=_base_.train_pipeline))
# no val split: validation on the test split is for monitoring only, and the
# checkpoint evaluated is the last one (no selection on the test split)
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        ann_file='test.txt',
        data_prefix='Images',
        pipeline=_base_.test_pipeline))
test_dataloader = val_dataloader
