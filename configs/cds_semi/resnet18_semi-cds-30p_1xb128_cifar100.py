# Semi-supervised CDS on CIFAR-100 with 30 % of the labels; everything else as
# in the 20 % config. Make the split first:
#   python tools/dataset_converters/make_semi_split.py <this config>
_base_ = './resnet18_semi-cds-20p_1xb128_cifar100.py'

train_dataloader = dict(
    dataset=dict(
        fraction=0.3,
        split_file='data/semi_splits/cifar100_train_30p_seed0.json'))
