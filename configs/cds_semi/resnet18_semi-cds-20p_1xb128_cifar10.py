# Semi-supervised CDS on CIFAR-10 with 20 % of the labels (poster figure:
# ~79 supervised-only -> ~85.5 CDS top-1); the CIFAR-100 20 % recipe with the
# CIFAR-10 data, classes and normalisation. Make the split first:
#   python tools/dataset_converters/make_semi_split.py <this config>
_base_ = './resnet18_semi-cds-20p_1xb128_cifar100.py'

# CDS_DATA_ROOT=DIR in the environment overrides the data folder
data_root = '{{$CDS_DATA_ROOT:data/cifar10}}'
cifar10 = dict(type='CIFAR10', data_root=data_root)
data_preprocessor = dict(
    num_classes=10,
    mean=[125.307, 122.961, 113.8575],
    std=[51.5865, 50.847, 51.255])
model = dict(
    classifier=dict(
        head=dict(num_classes=10), data_preprocessor=data_preprocessor))
train_dataloader = dict(
    dataset=dict(
        split_file='data/semi_splits/cifar10_train_20p_seed0.json',
        dataset=cifar10))
val_dataloader = dict(dataset=cifar10)
test_dataloader = dict(dataset=cifar10)
