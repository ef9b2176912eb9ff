# Semi-supervised CDS on CIFAR-100 with 40 % of the labels; everything else as
# in the 20 % config. Make the split first:
#   python tools/dataset_converters/make_semi_split.py <this config>
_base_ = './resnet18_semi-cds-20p_1xb128_cifar100.py'

train_dataloader = dict(
    dataset=dict(
        fraction=0.4,
        split_file='data/semi_splits/cifar100_train_40p_seed0.json'))
